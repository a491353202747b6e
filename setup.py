"""cxr-d2: a Detectron2 plugin for abnormalities in chest X-rays (and the SipMask project).

Detectron2 itself is not a declared dependency: PyPI has no official build. Install it first
(an official build, or `python tools/install_detectron2.py`, which `make setup` runs).
"""
from setuptools import find_packages, setup

setup(
    name="cxr-d2",
    version="0.1.0",
    description="Detectron2 plugin for detection and instance segmentation in chest X-rays",
    python_requires=">=3.10",
    packages=find_packages(include=["cxr_d2", "cxr_d2.*"])
    + find_packages("projects/SipMask", include=["sipmask", "sipmask.*"]),
    package_dir={"sipmask": "projects/SipMask/sipmask"},
    # the error-analysis page's template, script and style
    package_data={"cxr_d2.evaluation.errors_page": ["assets/*"]},
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        "numpy",
        "opencv-python-headless",
        "pillow>=9",
        "pycocotools>=2.0.6",
        "faster-coco-eval>=1.8",
        "hotcoco==1.3.0",  # Rust COCOeval: the default evaluation backend
        "matplotlib>=3.5",
        "pydicom>=3.0",
        "fvcore>=0.1.5",
        "iopath>=0.1.7",
        "tqdm",
        "tabulate",
        # weighted boxes fusion for `--ensemble`
        "ensemble-boxes>=1.0.9",
        # the evaluator's results file (coco_instances_results.json): 9x json.dumps
        "orjson>=3.9",
    ],
    extras_require={
        # tools/export_model.py --format onnx, and running the exported file
        "export": ["onnx>=1.16", "onnxscript>=0.5", "onnxruntime>=1.18"],
        # DICOM decoders pydicom uses when present: JPEG-LS, 12-bit JPEG, faster JPEG 2000
        "dicom": ["pylibjpeg>=2", "pylibjpeg-libjpeg>=2", "pylibjpeg-openjpeg>=2",
                  "pyjpegls>=1.2", "imagecodecs>=2024.1"],
        # tools/sweep.py on SLURM or submitit's local executor
        "sweep": ["submitit>=1.5"],
        # the error-analysis page's browser test (with Debian's chromium and chromium-driver)
        "browser": ["selenium>=4.20"],
        "test": [
            "pytest>=7",
            "pytest-timeout",
            "onnx>=1.16",
            "onnxscript>=0.5",
            "onnxruntime>=1.18",
            "submitit>=1.5",
            "selenium>=4.20",
            "pylibjpeg>=2",
            "pylibjpeg-libjpeg>=2",
            "pylibjpeg-openjpeg>=2",
            "pyjpegls>=1.2",
            "imagecodecs>=2024.1",
        ],
    },
    # Projects whose add_x_config the tools apply (cxr_d2/engine/projects.py).
    entry_points={"cxr_d2.projects": ["sipmask = sipmask:add_sipmask_config"]},
)
