"""Named protocols (lattice/planning/protocols.py): each resolves, its values are the published ones
and lie in every range of lattice/planning/parameters.py, unknown names are refused with the valid
ones, and explicit settings override a protocol's.

The expected values are written out from the sources the protocols cite (docs/protocols.md):
Mayo (Deufel et al. 2024) D 15 mm, spacing >= 30 mm, centre >= 5 mm + R inside the GTV and
>= 10 mm + R from every OAR, co-planar 20 / 80 mm; WashU LITE SABR (Duriseti et al. 2022)
D 15 mm hot spheres on an FCC lattice 3 sqrt(2) cm apart, on the CT slices, GTV retracted by
5 mm.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from cli_helpers import run

from lattice.errors import ParameterError
from lattice.geometry.patterns import PATTERNS
from lattice.planning.parameters import RANGES
from lattice.planning.placement import plan_vertices
from lattice.planning.plan import PlanParameters
from lattice.planning.protocols import PROTOCOLS, Protocol, get_protocol
from lattice.volume import Volume

PUBLISHED = {
    "mayo": {
        "diameter_mm": 15.0,
        "min_spacing_mm": 30.0,
        "gtv_margin_mm": 5.0,
        "pattern": "hcp",
        "coplanar_mm": 20.0,
        "coplanar_spacing_mm": 80.0,
    },
    "washu": {
        "diameter_mm": 15.0,
        "min_spacing_mm": 30.0 * math.sqrt(2.0),
        "gtv_margin_mm": 5.0,
        "pattern": "fcc",
        "snap_to_slices": True,
    },
}
PUBLISHED_OAR_CLEARANCE_MM = {"mayo": 10.0, "washu": None}
#: WashU's 3 sqrt(2) cm is written to 0.01 mm, rounded up so the spheres are never closer.
WASHU_ROUNDING_MM = 0.01


def test_the_protocols_are_the_published_ones():
    assert set(PROTOCOLS) == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_each_protocol_resolves_by_its_name(name):
    protocol = get_protocol(name)
    assert isinstance(protocol, Protocol)
    assert protocol is PROTOCOLS[name] and protocol.name == name
    assert protocol.description and protocol.source
    assert any(author in protocol.source for author in ("Deufel", "Duriseti"))


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_values_are_the_published_ones(name):
    params = get_protocol(name).parameters
    want = PUBLISHED[name]
    assert set(params) == set(want)
    for key, value in want.items():
        if key == "min_spacing_mm" and name == "washu":
            assert value <= params[key] <= value + WASHU_ROUNDING_MM
        else:
            assert params[key] == value, key
    assert get_protocol(name).oar_clearance_mm == PUBLISHED_OAR_CLEARANCE_MM[name]


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_values_are_valid_plan_parameters_within_their_ranges(name):
    protocol = get_protocol(name)
    fields = {f.name for f in dataclasses.fields(PlanParameters)}
    assert set(protocol.parameters) <= fields
    for key, value in protocol.parameters.items():
        if key in RANGES:
            assert RANGES[key].contains(value), (key, value, RANGES[key].text())
    if protocol.oar_clearance_mm is not None:
        assert RANGES["oar_clearance_mm"].contains(protocol.oar_clearance_mm)
    assert protocol.parameters["pattern"] in PATTERNS
    assert protocol.parameters["min_spacing_mm"] >= protocol.parameters["diameter_mm"]
    oars = {} if protocol.oar_clearance_mm is None else {"cord": protocol.oar_clearance_mm}
    PlanParameters(**protocol.parameters, oar_clearance_mm=oars, protocol=name).validate()


def test_an_unknown_protocol_is_refused_with_the_valid_names():
    with pytest.raises(ParameterError) as info:
        get_protocol("mdacc")
    message = str(info.value)
    assert "'mdacc'" in message
    for name in PROTOCOLS:
        assert name in message


def test_protocol_lookup_is_case_sensitive():
    with pytest.raises(ParameterError):
        get_protocol("Mayo")


def test_a_plan_records_its_protocol_and_source():
    shape = (30, 30, 16)
    aff = np.diag([1.5, 1.5, 2.5, 1.0])
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    centre = (np.array(shape) - 1) / 2 * [1.5, 1.5, 2.5]
    gtv = np.linalg.norm(ijk * [1.5, 1.5, 2.5] - centre, axis=-1) <= 18.0
    params = get_protocol("mayo").parameters
    plan = plan_vertices(Volume(gtv, aff), protocol="mayo", **params)
    doc = plan.to_dict()
    assert doc["parameters"]["protocol"] == "mayo"
    assert doc["parameters"]["protocol_source"] == get_protocol("mayo").source


# -- overrides, through the command --------------------------------------------------------


@pytest.fixture(scope="module")
def sphere_case(tmp_path_factory, make_affine, ellipsoid_mask, write_nifti):
    folder = tmp_path_factory.mktemp("protocol_case")
    shape, vox = (56, 56, 30), (1.5, 1.5, 2.5)
    affine = make_affine(shape, vox, "lps")
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    gtv = ellipsoid_mask((shape, affine), centre, 34.0)
    oar = ellipsoid_mask((shape, affine), centre + [36.0, 0.0, 0.0], 6.0)
    ct = np.where(gtv, 40, 0).astype(np.int16)
    return {
        "ct": write_nifti(folder, "ct.nii.gz", ct, affine),
        "gtv": write_nifti(folder, "gtv.nii.gz", gtv, affine),
        "oar": write_nifti(folder, "oar.nii.gz", oar, affine),
    }


def plan_doc(capfd, case, out, *options):
    code, _, err = run(
        capfd,
        [
            "plan",
            "--ct",
            case["ct"],
            "--gtv",
            case["gtv"],
            "--out",
            out,
            "--no-picture",
            "--no-dicom",
            "--mesh-format",
            "none",
            *options,
        ],
    )
    assert code == 0, err
    return json.loads((out / "plan.json").read_text())


def test_explicit_options_override_every_protocol_value(capfd, sphere_case, tmp_path):
    doc = plan_doc(
        capfd,
        sphere_case,
        tmp_path / "mayo",
        "--protocol",
        "mayo",
        "--diameter-mm",
        "12",
        "--spacing-mm",
        "33",
        "--gtv-margin-mm",
        "4",
        "--pattern",
        "fcc",
        "--coplanar-mm",
        "15",
        "--coplanar-spacing-mm",
        "60",
        "--oar",
        f"{sphere_case['oar']}:7",
    )
    p = doc["parameters"]
    assert (p["diameter_mm"], p["min_spacing_mm"], p["gtv_margin_mm"], p["pattern"]) == (
        12.0,
        33.0,
        4.0,
        "fcc",
    )
    assert (p["coplanar_mm"], p["coplanar_spacing_mm"]) == (15.0, 60.0)
    assert p["protocol"] == "mayo"
    assert doc["inputs"]["oars"][0]["clearance_mm"] == 7.0


def test_values_not_given_come_from_the_protocol(capfd, sphere_case, tmp_path):
    doc = plan_doc(
        capfd, sphere_case, tmp_path / "washu", "--protocol", "washu", "--diameter-mm", "10"
    )
    p = doc["parameters"]
    washu = get_protocol("washu").parameters
    assert p["diameter_mm"] == 10.0
    for key in ("min_spacing_mm", "gtv_margin_mm", "pattern", "snap_to_slices"):
        assert p[key] == washu[key], key
    doc = plan_doc(
        capfd,
        sphere_case,
        tmp_path / "mayo",
        "--protocol",
        "mayo",
        "--oar",
        str(sphere_case["oar"]),
    )
    assert doc["inputs"]["oars"][0]["clearance_mm"] == get_protocol("mayo").oar_clearance_mm
    assert doc["parameters"]["coplanar_spacing_mm"] == 80.0


# -- overrides, in the library ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_from_protocol_gives_the_protocol_values_and_defaults_elsewhere(name):
    params = PlanParameters.from_protocol(name)
    preset = get_protocol(name).parameters
    assert params.protocol == name
    for f in dataclasses.fields(PlanParameters):
        if f.name == "protocol":
            continue
        if f.name in preset:
            assert getattr(params, f.name) == preset[f.name], f.name
        else:
            assert getattr(params, f.name) == getattr(PlanParameters(), f.name), f.name


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_every_override_wins_over_the_protocol(name):
    overrides = {
        "diameter_mm": 12.0,
        "min_spacing_mm": 33.0,
        "gtv_margin_mm": 4.0,
        "pattern": "sc",
        "coplanar_mm": 15.0,
        "coplanar_spacing_mm": 60.0,
        "oar_clearance_mm": {"cord": 7.0},
        "rotation_step_deg": 10.0,
    }
    params = PlanParameters.from_protocol(name, **overrides)
    for key, value in overrides.items():
        assert getattr(params, key) == value, key
    # What was not overridden is still the protocol's.
    for key, value in get_protocol(name).parameters.items():
        if key not in overrides:
            assert getattr(params, key) == value, key


def test_an_override_of_none_is_not_given():
    params = PlanParameters.from_protocol("mayo", diameter_mm=None, pattern=None)
    assert (params.diameter_mm, params.pattern) == (15.0, "hcp")


def test_a_zero_coplanar_distance_turns_the_protocols_rule_off():
    params = PlanParameters.from_protocol("mayo", coplanar_mm=0)
    assert params.coplanar_mm is None and params.coplanar_spacing_mm is None


def test_no_protocol_gives_the_defaults():
    params = PlanParameters.from_protocol(None, min_spacing_mm=25.0)
    assert params.protocol is None
    assert params.min_spacing_mm == 25.0
    assert params.diameter_mm == PlanParameters().diameter_mm


def test_from_protocol_refuses_unknown_names_and_bad_values():
    with pytest.raises(ParameterError, match="'mdacc'.*mayo.*washu|'mdacc'.*washu.*mayo"):
        PlanParameters.from_protocol("mdacc")
    with pytest.raises(ParameterError, match="spacing_mm"):
        PlanParameters.from_protocol("mayo", spacing_mm=30.0)  # the CLI's word, not a field
    with pytest.raises(ParameterError):
        PlanParameters.from_protocol("mayo", diameter_mm=RANGES["diameter_mm"].high * 2)
    with pytest.raises(ParameterError):
        PlanParameters.from_protocol("washu", min_spacing_mm=10.0)  # below the diameter


# -- a protocol's OAR clearance: the library and the command agree --------------------------


def test_an_oar_without_a_clearance_takes_the_protocols_in_the_library():
    params = PlanParameters.from_protocol("mayo", oar_clearance_mm={"cord": None, "lung": 4.0})
    assert params.oar_clearance_mm == {"cord": 10.0, "lung": 4.0}
    with pytest.raises(ParameterError, match="'cord' has no clearance"):
        PlanParameters.from_protocol("washu", oar_clearance_mm={"cord": None})
    with pytest.raises(ParameterError, match="'cord' has no clearance"):
        PlanParameters.from_protocol(None, oar_clearance_mm={"cord": None})


def test_run_plans_request_and_the_command_take_the_same_protocol_clearance(tmp_path):
    from lattice.pipeline import NiftiInputs, PlanRequest, check_request
    from lattice.plan_options import request_from_options
    from lattice.planning.parameters import OarSpec

    oar = OarSpec("cord", tmp_path / "cord.nii.gz", None)
    request = PlanRequest(
        NiftiInputs(tmp_path / "ct.nii.gz", tmp_path / "gtv.nii.gz", oars=[oar]),
        tmp_path / "out",
        PlanParameters.from_protocol("mayo"),
    )
    from_options = request_from_options(
        {
            "ct": tmp_path / "ct.nii.gz",
            "gtv": tmp_path / "gtv.nii.gz",
            "oar": [oar],
            "protocol": "mayo",
            "out": tmp_path / "out",
        }
    )
    expected = PlanParameters.from_protocol("mayo", oar_clearance_mm={"cord": None})
    assert check_request(request)[0] == check_request(from_options)[0] == expected
    assert expected.oar_clearance_mm == {"cord": get_protocol("mayo").oar_clearance_mm}
