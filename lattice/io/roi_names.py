"""The names of a plan's ROIs in ``rtstruct.dcm``: a naming scheme, a prefix and a clinic's map.

Every ROI is made under its default name (``LATTICE_VTX``, ``VTX_01``, ``LATTICE_SH00_05``...);
:meth:`RoiNaming.rename` gives it its final name once, at the end of building the ROI list,
from one table, :data:`ROI_NAME_RULES` (a new kind of ROI needs only a row there).

Schemes (``--roi-names``):

- ``default``: the default names.
- ``tg263``: AAPM TG-263 (Mayo et al., AAPM Report 263, 2018; Int J Radiat Oncol Biol Phys
  2018;100:1057): target names start with the target type (``PTV``, ``GTV``), an enumerator
  follows the type (``PTV01``), relative dose levels end the name after an underscore
  (``_High``, ``_Low``; preferred to physical doses), ``PTV!`` is a low-dose volume that
  excludes the high-dose ones, and a custom qualifier follows a ``^`` (section 8.2);
  structures not used for dose evaluation (optimisation helpers, rings) start with ``z`` so
  that an alphabetical sort groups them apart (section 7.2, item 15; ``zRing``, ``zPTVCold``
  are the report's examples); no spaces, ``_`` separates categories.

``--roi-prefix`` is put before every name (after the leading ``z`` of a TG-263 helper, so
that helpers still sort apart; a prefix before a target type is not TG-263, which wants the
type first). ``--roi-name-map FILE.json`` maps default names to a clinic's own, used as
given (no prefix). Every final name is at most 16 characters (Eclipse's limit, also TG-263's),
a valid DICOM LO value without leading or trailing spaces, and unique without regard to case
(TG-263 section 7.2 item 2: systems compare names case-insensitively); otherwise a
:class:`~lattice.errors.ParameterError` names the ROI and says how to fix it.

>>> RoiNaming("tg263").name("LATTICE_SH05_15"), RoiNaming("tg263", prefix="L1_").name("VTX_02")
('zRing05_15', 'L1_PTV02_High')
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InputFileError, ParameterError
from .dicom_series import dicom_string_problem

#: Longest ROI name: Eclipse's structure ID limit, also TG-263's (section 7.2, item 1).
MAX_ROI_NAME = 16
#: The naming schemes of ``--roi-names``.
ROI_NAME_SCHEMES = ("default", "tg263")


@dataclass(frozen=True)
class RoiNameRule:
    """How one kind of ROI is named.

    Attributes
    ----------
    pattern : str
        Its default name: exact, or a regular expression matched in full whose groups the
        other names refer to as ``\\1``, ``\\2``.
    tg263 : str
        Its TG-263 name (a replacement template of ``pattern``).
    evaluated : bool
        Used for dose evaluation (a target, the valley); False: an optimisation helper
        (TG-263: ``z`` first).
    what : str
        What it holds, for the README's table and the error messages.
    """

    pattern: str
    tg263: str
    evaluated: bool
    what: str

    def match(self, default: str) -> re.Match[str] | None:
        return re.fullmatch(self.pattern, default)


#: Every kind of ROI lattice writes, by default name. The TG-263 names: the vertices are the
#: high-dose target (``PTV_High``; one per vertex ``PTV01_High``, enumerated after the type);
#: the valley is the low-dose target without the high-dose volumes (``PTV!_Low``); the STV
#: is a target with the custom qualifier ``^STV``; the LATTICE target, the cold spheres and
#: the rings are optimisation helpers (``z``).
ROI_NAME_RULES: tuple[RoiNameRule, ...] = (
    RoiNameRule("LATTICE_VTX", "PTV_High", True, "every vertex sphere"),
    RoiNameRule(r"VTX_(\d+)", r"PTV\1_High", True, "one vertex sphere"),
    RoiNameRule("LATTICE_VALLEY", "PTV!_Low", True, "the GTV minus the vertex spheres"),
    RoiNameRule("LATTICE_TARGET", "zGTV_Lattice", False, "the GTV eroded by the margin"),
    RoiNameRule("LATTICE_STV", "PTV^STV", True, "the SCART target (contracted GTV)"),
    RoiNameRule("GTV", "GTV", True, "the GTV (derived DICOM CT only)"),
    RoiNameRule("LATTICE_COLD", "zPTV_Cold", False, "every cold sphere"),
    RoiNameRule(r"COLD_(\d+)", r"zPTV_Cold\1", False, "one cold sphere"),
    RoiNameRule(r"LATTICE_SH(\d+)_(\d+)", r"zRing\1_\2", False, "shell a-b mm from the vertices"),
    RoiNameRule(r"GTV_RING(\d+)_(\d+)", r"zRingGTV\1_\2", False, "ring GTV+b mm minus GTV+a mm"),
    RoiNameRule(r"STV_RING(\d+)_(\d+)", r"zRingSTV\1_\2", False, "ring STV+b mm minus STV+a mm"),
)


def roi_rule(default: str) -> RoiNameRule | None:
    """The rule of a default ROI name (None: not a name lattice writes)."""
    return next((r for r in ROI_NAME_RULES if r.match(default)), None)


def known_names_text() -> str:
    """The default names a name map may hold, for messages: ``LATTICE_VTX, VTX_nn, ...``."""
    shown = []
    for rule in ROI_NAME_RULES:
        text = rule.pattern.replace(r"(\d+)", "nn", 1).replace(r"_(\d+)", "_nn")
        shown.append(text)
    return ", ".join(shown)


@dataclass(frozen=True)
class RoiNaming:
    """How the ROIs of ``rtstruct.dcm`` are named (see the module docstring).

    Attributes
    ----------
    scheme : {'default', 'tg263'}
    prefix : str
        Put before every name (after the ``z`` of a TG-263 helper).
    name_map : mapping of str to str
        Default name -> final name, used as given (no prefix); keys are default names
        lattice writes (``VTX_03`` for one vertex).
    map_source : dict, optional
        ``{'path', 'sha256'}`` of the file the map was read from (recorded in plan.json).

    Raises
    ------
    ParameterError
        An unknown scheme, a prefix that is not valid in a DICOM LO value, a key of the map
        that is not a default name, a value that is not a valid ROI name, or names that
        collide among the plan's usual ROIs.
    """

    scheme: str = "default"
    prefix: str = ""
    name_map: Mapping[str, str] = field(default_factory=dict)
    map_source: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.scheme not in ROI_NAME_SCHEMES:
            raise ParameterError(
                f"{{roi_names}} {self.scheme!r} is not a naming scheme; choose one of "
                f"{', '.join(ROI_NAME_SCHEMES)}",
                parameters=["roi_names"],
            )
        problem = dicom_string_problem(self.prefix, "LO")
        if problem or self.prefix != self.prefix.lstrip() or len(self.prefix) >= MAX_ROI_NAME:
            why = problem or (
                "it starts with a space"
                if self.prefix != self.prefix.lstrip()
                else f"it leaves no room in {MAX_ROI_NAME} characters"
            )
            raise ParameterError(
                f"{{roi_prefix}} {self.prefix!r} cannot start an ROI name: {why}; use a few "
                "letters, digits or '_'",
                parameters=["roi_prefix"],
            )
        object.__setattr__(self, "name_map", dict(self.name_map))
        for key, value in self.name_map.items():
            if not isinstance(key, str) or roi_rule(key) is None:
                raise ParameterError(
                    f"{{roi_name_map}}: {key!r} is not an ROI lattice writes; the keys are "
                    f"default names: {known_names_text()}",
                    parameters=["roi_name_map"],
                )
            if not isinstance(value, str):
                raise ParameterError(
                    f"{{roi_name_map}}: the name for {key} must be a string, got {value!r}",
                    parameters=["roi_name_map"],
                )
            _check_one(key, value, parameter="roi_name_map")
        # The ROIs of every plan, checked now so that most mistakes stop before any work.
        check_roi_names(
            {d: self.name(d) for d in ("LATTICE_VTX", "VTX_01", "LATTICE_TARGET", "LATTICE_VALLEY")}
        )

    @classmethod
    def from_options(
        cls,
        scheme: str | None = None,
        prefix: str | None = None,
        map_path: str | Path | None = None,
    ) -> RoiNaming:
        """The naming of ``--roi-names``, ``--roi-prefix`` and ``--roi-name-map`` (None: not
        given), the map read now.

        Raises
        ------
        InputFileError
            The map file is missing, unreadable or not a JSON object.
        ParameterError
            See :class:`RoiNaming`.
        """
        name_map, source = ({}, None) if map_path is None else load_name_map(map_path)
        return cls(scheme or "default", prefix or "", name_map, source)

    def name(self, default: str) -> str:
        """The final name of the ROI named ``default`` by default."""
        if default in self.name_map:
            return self.name_map[default]
        rule = roi_rule(default)
        if self.scheme == "default" or rule is None:
            base = default
        else:
            match = rule.match(default)
            assert match is not None
            base = match.expand(rule.tg263)
        if self.scheme == "tg263" and rule is not None and not rule.evaluated:
            return "z" + self.prefix + base[1:]
        return self.prefix + base

    def rename(self, rois: Sequence[Any]) -> list[Any]:
        """``rois`` (:class:`~lattice.io.rtstruct_write.RoiSpec`) under their final names,
        checked together (:func:`check_roi_names`)."""
        names = {r.name: self.name(r.name) for r in rois}
        check_roi_names(names)
        return [replace(r, name=names[r.name], default_name=r.name) for r in rois]

    def parameters(self) -> dict[str, Any]:
        """plan.json ``parameters``: ``roi_names``, ``roi_prefix``, ``roi_name_map``."""
        source = None
        if self.map_source is not None:
            source = {**self.map_source, "names": dict(self.name_map)}
        return {"roi_names": self.scheme, "roi_prefix": self.prefix, "roi_name_map": source}


def roi_records(rois: Iterable[Any]) -> list[dict[str, Any]]:
    """plan.json ``rois``: per ROI written (:class:`~lattice.io.rtstruct_write.RoiSpec`, after
    :meth:`RoiNaming.rename`), its name, default name, interpreted type and colour."""
    return [
        {
            "name": r.name,
            "default_name": r.default_name or r.name,
            "type": r.interpreted_type,
            "color": list(r.color),
        }
        for r in rois
    ]


def check_roi_names(names: Mapping[str, str]) -> None:
    """Every final name (``{default name: final name}``) at most :data:`MAX_ROI_NAME`
    characters, a valid DICOM LO value, and unique without regard to case.

    Raises
    ------
    ParameterError
        The first problem found, naming the ROI and the options to change.
    """
    seen: dict[str, str] = {}
    for default, final in names.items():
        _check_one(default, final)
        other = seen.get(final.casefold())
        if other is not None:
            raise ParameterError(
                f"ROIs {other} and {default} would both be named {final!r} (TPSs compare "
                "names without regard to case); change {roi_name_map} or {roi_prefix}",
                parameters=["roi_name_map", "roi_prefix"],
            )
        seen[final.casefold()] = default


def _check_one(default: str, final: str, *, parameter: str | None = None) -> None:
    fields = [parameter] if parameter else ["roi_prefix", "roi_name_map"]
    fix = (
        "choose another name in {roi_name_map}"
        if parameter
        else "use a shorter {roi_prefix} or name it in {roi_name_map}"
    )
    problem = dicom_string_problem(final, "LO")
    if problem:
        pass
    elif not final or not final.strip():
        problem = "it is empty"
    elif final != final.strip():
        problem = "it starts or ends with a space (DICOM pads and strips them)"
    elif len(final) > MAX_ROI_NAME:
        problem = f"it has {len(final)} characters, more than {MAX_ROI_NAME} (Eclipse's limit)"
    if problem:
        raise ParameterError(
            f"the ROI {default} cannot be named {final!r}: {problem}; {fix}", parameters=fields
        )


def load_name_map(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """A name map file (``{"LATTICE_VTX": "zPTV_Peak", ...}``) and its path and SHA-256.

    Raises
    ------
    InputFileError
        Missing, unreadable, not JSON, or not an object.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(
            f"cannot read the ROI name map '{path}' ({exc.strerror or exc}); give a JSON file "
            'such as {"LATTICE_VTX": "PTV_Peak"}'
        ) from None
    try:
        name_map = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(
            f"the ROI name map '{path}' is not JSON ({exc}); write it as "
            '{"LATTICE_VTX": "PTV_Peak", ...}'
        ) from None
    if not isinstance(name_map, dict):
        raise InputFileError(
            f"the ROI name map '{path}' holds a {type(name_map).__name__}, not an object of "
            'default name -> name, e.g. {"LATTICE_VTX": "PTV_Peak"}'
        )
    source = {"path": str(path.resolve()), "sha256": hashlib.sha256(data).hexdigest()}
    return name_map, source
