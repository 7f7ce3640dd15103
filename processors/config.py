"""Configuration readers in the manner of OpenSearch's ``ConfigurationUtils``: each pops its key from the config map,
so whatever is left afterwards is an unsupported parameter. Errors name the processor type, tag and property."""

from __future__ import annotations

from typing import Any

from processors.errors import ConfigurationError

_MISSING = object()


def _type_name(value: Any) -> str:
    # the Java class names OpenSearch reports, for the JSON types a config can hold
    return {str: "java.lang.String", bool: "java.lang.Boolean", int: "java.lang.Integer", float: "java.lang.Double",
            list: "java.util.ArrayList", dict: "java.util.LinkedHashMap"}.get(type(value), type(value).__name__)


class ConfigReader:
    """Reads one processor's config map (mutated: every read pops its key)."""

    def __init__(self, processor_type: str, tag: str | None, config: dict[str, Any]) -> None:
        self.type = processor_type
        self.tag = tag
        self.config = config

    def error(self, prop: str | None, reason: str, *, error_type: str | None = None) -> ConfigurationError:
        return ConfigurationError(self.type, self.tag, prop, reason, error_type=error_type)

    def illegal(self, reason: str, prop: str | None = None) -> ConfigurationError:
        """An IllegalArgumentException thrown by a factory, as OpenSearch wraps it (reason unprefixed)."""
        err = ConfigurationError(self.type, self.tag, None, reason, error_type="illegal_argument_exception")
        if prop is not None:
            err.extra["property_name"] = prop
            err.property_name = prop
        return err

    def _pop(self, prop: str) -> Any:
        return self.config.pop(prop, None)

    def string(self, prop: str, default: str | None = None) -> str:
        value = self._pop(prop)
        if value is None:
            if default is not None:
                return default
            raise self.error(prop, "required property is missing")
        if not isinstance(value, str):
            raise self.error(prop, f"property isn't a string, but of type [{_type_name(value)}]")
        return value

    def optional_string(self, prop: str) -> str | None:
        value = self._pop(prop)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(prop, f"property isn't a string, but of type [{_type_name(value)}]")
        return value

    def boolean(self, prop: str, default: bool) -> bool:
        value = self._pop(prop)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(prop, f"property isn't a boolean, but of type [{_type_name(value)}]")
        return value

    def integer(self, prop: str, default: int | None) -> int | None:
        value = self._pop(prop)
        if value is None:
            return default
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(str(value)) if not isinstance(value, float) else int(value)
        except ValueError:
            raise self.error(prop, f"property cannot be converted to an int [{value}]") from None

    def double(self, prop: str) -> float:
        value = self._pop(prop)
        if value is None:
            raise self.error(prop, "required property is missing")
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(str(value))
        except ValueError:
            raise self.error(prop, f"property cannot be converted to a double [{value}]") from None

    def map(self, prop: str) -> dict[str, Any]:
        value = self._pop(prop)
        if value is None:
            raise self.error(prop, "required property is missing")
        if not isinstance(value, dict):
            raise self.error(prop, f"property isn't a map, but of type [{_type_name(value)}]")
        return value

    def optional_map(self, prop: str) -> dict[str, Any] | None:
        value = self._pop(prop)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(prop, f"property isn't a map, but of type [{_type_name(value)}]")
        return value

    def optional_list(self, prop: str) -> list[Any] | None:
        value = self._pop(prop)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.error(prop, f"property isn't a list, but of type [{_type_name(value)}]")
        return value

    def reject_leftovers(self) -> None:
        if self.config:
            keys = ", ".join(self.config)
            raise self.error(None, f"processor [{self.type}] doesn't support one or more provided configuration "
                                   f"parameters [{keys}]")
