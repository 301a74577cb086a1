"""One rule: a frozen, slotted dataclass built per device of a fan-out gets a cheaper `__init__`.

The one `dataclasses` writes for a frozen class sets each field through `object.__setattr__`
(a global lookup, an attribute lookup and a call by name per field): a push's record of 12
fields took 3 µs to build, and a fan-out builds four such objects per device. This `__init__`
calls each slot's own setter instead, about half the cost; the class stays what it was
(frozen, its fields, defaults, equality, hash, `dataclasses.replace`).
"""

import dataclasses


def quick_init(cls: type) -> type:
    """Decorate (above `@dataclass(frozen=True, slots=True)`) a class whose fields have no
    default factories and no `__post_init__`."""
    if not (cls.__dataclass_params__.frozen and "__slots__" in cls.__dict__):
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    scope: dict = {}
    params, lines = [], []
    for i, field in enumerate(dataclasses.fields(cls)):
        if field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name} has a default factory")
        scope[f"set{i}"] = cls.__dict__[field.name].__set__
        if field.default is dataclasses.MISSING:
            params.append(field.name)
        else:
            scope[f"default{i}"] = field.default
            params.append(f"{field.name}=default{i}")
        lines.append(f"    set{i}(self, {field.name})")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(lines), scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    return cls
