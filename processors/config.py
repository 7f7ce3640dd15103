"""Configuration readers in the manner of OpenSearch's ``ConfigurationUtils``: each pops its key from the config map,
so whatever is left afterwards is an unsupported parameter. Errors name the processor type, tag and property.

Beyond OpenSearch: an unsupported parameter that looks like a misspelt one gets a hint (``[field_mapp]; did you mean
[field_map]?``), and when a factory fails while such a key is left (the misspelling left ``field_map`` missing),
:meth:`ConfigReader.misspelt` names the misspelt key instead of the symptom."""

from __future__ import annotations

import difflib
from typing import Any

from processors.errors import ConfigurationError

_HINT_CUTOFF = 0.7  # difflib ratio: field_mapp/field_map 0.95, model/model_id 0.77, batch/batch_size 0.67


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
        self.asked: list[str] = []  # every property read so far (the known names, for did-you-mean hints)

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
        self.asked.append(prop)
        return self.config.pop(prop, None)

    def value(self, prop: str) -> Any:
        """The property as it is (any type), or None."""
        return self._pop(prop)

    def misspelt(self) -> ConfigurationError | None:
        """After a factory failed: the leftover keys that look like misspellings of properties it read, as the
        unsupported-parameters error (the likely cause: a misspelt ``field_map`` leaves ``field_map`` missing)."""
        hints = self._hints([str(k) for k in self.config])
        return self._unsupported(list(hints), hints) if hints else None

    def _hints(self, keys: list[str]) -> dict[str, str]:
        hints = {}
        for key in keys:
            close = difflib.get_close_matches(key, self.asked, n=1, cutoff=_HINT_CUTOFF)
            if close:
                hints[key] = close[0]
        return hints

    def _unsupported(self, keys: list[str], hints: dict[str, str]) -> ConfigurationError:
        reason = (f"processor [{self.type}] doesn't support one or more provided configuration parameters "
                  f"[{', '.join(keys)}]")
        if len(hints) == 1 and len(keys) == 1:
            reason += f"; did you mean [{next(iter(hints.values()))}]?"
        elif hints:
            reason += "; did you mean " + ", ".join(f"[{right}] for [{wrong}]" for wrong, right in hints.items()) + "?"
        return self.error(None, reason)

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
            keys = [str(k) for k in self.config]
            raise self._unsupported(keys, self._hints(keys))
