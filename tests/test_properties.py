"""Property tests (hypothesis) on the pure validators and planners."""
from __future__ import annotations

import ipaddress

from hypothesis import given, settings as hsettings, strategies as st

import settings
from components.database import backtrack_seconds, cluster_identifier, final_snapshot_name

hsettings.register_profile("ci", max_examples=150, deadline=None)
hsettings.load_profile("ci")


@given(st.integers(min_value=8, max_value=24), st.integers(min_value=1, max_value=4),
       st.integers(min_value=1, max_value=4), st.integers(min_value=0, max_value=4))
def test_subnet_plan_is_disjoint_and_inside_the_vpc(prefix, azs, tiers, extra_bits):
    vpc = ipaddress.ip_network(f"10.0.0.0/{prefix}")
    mask = prefix + extra_bits + 3  # room for up to 8 subnets
    names = tuple(f"tier{i}" for i in range(tiers))
    try:
        plan = settings.plan_subnets(str(vpc), azs, names, min(mask, 28))
    except ValueError as err:
        assert "no room" in str(err)
        return
    blocks = [ipaddress.ip_network(c) for tier in names for c in plan[tier]]
    assert len(blocks) == azs * tiers
    assert all(b.subnet_of(vpc) for b in blocks)
    assert all(not a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1:])


def test_subnet_plan_matches_the_original_layout():
    assert settings.plan_subnets("10.0.0.0/16", 2, ("public", "private", "isolated"), 24) == {
        "public": ["10.0.0.0/24", "10.0.1.0/24"],
        "private": ["10.0.2.0/24", "10.0.3.0/24"],
        "isolated": ["10.0.4.0/24", "10.0.5.0/24"],
    }


@given(st.one_of(st.ip_addresses(v=4).map(lambda a: ipaddress.ip_network(f"{a}/{a.max_prefixlen}")),
                 st.builds(lambda a, p: ipaddress.ip_network(f"{a}/{p}", strict=False),
                           st.ip_addresses(), st.integers(min_value=0, max_value=32))))
def test_parse_cidr_round_trips_networks(network):
    assert settings.parse_cidr(str(network)) == str(network)


@given(st.integers(min_value=0, max_value=512))
def test_acu_accepts_exactly_half_steps_to_256(halves):
    assert settings.parse_acu(halves / 2) == halves / 2


@given(st.floats(min_value=0, max_value=256, allow_nan=False).filter(lambda x: (x * 2) != int(x * 2)))
def test_acu_rejects_other_fractions(value):
    try:
        settings.parse_acu(value)
    except settings.Problem:
        return
    raise AssertionError(f"{value} accepted")


@given(st.integers(min_value=0, max_value=6), st.integers(min_value=0, max_value=1439),
       st.integers(min_value=1, max_value=1440))
def test_maintenance_window_accepts_30_minutes_to_a_day_only(day, minute, length):
    start = day * 1440 + minute
    end = (start + length) % (7 * 1440)

    def fmt(m: int) -> str:
        return f"{settings.DAYS[m // 1440].capitalize()}:{(m % 1440) // 60:02d}:{m % 60:02d}"

    window = f"{fmt(start)}-{fmt(end)}"
    if length >= 30:
        assert settings.parse_maintenance_window(window) == window.lower()
    else:
        try:
            settings.parse_maintenance_window(window)
        except settings.Problem:
            return
        raise AssertionError(f"{window} accepted")


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=80),
       st.text(alphabet="0123456789abcdef", min_size=8, max_size=8))
def test_cluster_identifiers_are_valid_rds_names(stack, suffix):
    ident = cluster_identifier(stack, suffix)
    assert len(ident) <= 63 and ident[0].isalpha() and "--" not in ident
    assert all(c.isalnum() or c == "-" for c in ident) and not ident.endswith("-")
    assert ident.endswith(suffix)
    assert len(final_snapshot_name(ident)) <= 255


@given(st.floats(min_value=0, max_value=72, allow_nan=False))
def test_backtrack_window_stays_within_aws_limit(hours):
    assert 0 <= backtrack_seconds(hours) <= 259200


@given(st.sampled_from(sorted(settings.ISO_COUNTRIES)))
def test_every_iso_code_is_accepted_in_any_case(code):
    assert settings.parse_country(code.lower()) == code


@given(st.sampled_from([256, 512, 1024, 2048, 4096, 8192, 16384]))
def test_every_fargate_cpu_has_memory_choices_in_range(units):
    choices = settings.fargate_memory_choices(units)
    assert choices == sorted(choices) and 512 <= choices[0] and choices[-1] <= 122880
    assert settings.fargate_cpu_units(f"{units / 1024:g} vCPU") == units
