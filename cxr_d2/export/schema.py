"""
TracingAdapter's output schema to and from JSON, so that an exported graph's flat tuple of
tensors can be rebuilt into Instances (Boxes and all) without the model's Python class.
"""
import dataclasses

from detectron2.export import flatten

__all__ = ["schema_to_json", "schema_from_json", "flat_names"]

_CLASSES = {
    c.__name__: c
    for c in (
        flatten.ListSchema,
        flatten.TupleSchema,
        flatten.IdentitySchema,
        flatten.DictSchema,
        flatten.InstancesSchema,
        flatten.TensorWrapSchema,
    )
}


def schema_to_json(schema):
    """A detectron2.export.flatten Schema as plain dicts and lists ({"type": ..., fields})."""
    out = {"type": type(schema).__name__}
    for field in dataclasses.fields(schema):
        value = getattr(schema, field.name)
        out[field.name] = [schema_to_json(s) for s in value] if field.name == "schemas" else value
    return out


def schema_from_json(data):
    """The inverse of schema_to_json."""
    kwargs = {k: v for k, v in data.items() if k != "type"}
    if "schemas" in kwargs:
        kwargs["schemas"] = [schema_from_json(s) for s in kwargs["schemas"]]
    return _CLASSES[data["type"]](**kwargs)


def flat_names(schema, prefix=""):
    """
    The name of each tensor of the flattened output, in order: an Instances' fields by name
    and its `image_size` last (`pred_boxes`, `scores`, ..., `image_size`); list items by index.
    """
    if isinstance(schema, (flatten.IdentitySchema, flatten.TensorWrapSchema)):
        return [prefix or "output"]
    keys = getattr(schema, "keys", None) or [str(i) for i in range(len(schema.schemas))]
    names = []
    for key, sub in zip(keys, schema.schemas):
        names += flat_names(sub, f"{prefix}.{key}" if prefix else key)
    if isinstance(schema, flatten.InstancesSchema):
        names.append(f"{prefix}.image_size" if prefix else "image_size")
    return names
