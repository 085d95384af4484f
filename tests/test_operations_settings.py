"""The `operations` block: every rule, valid and invalid, with the message the user sees."""
from __future__ import annotations

import pytest

from settings.operations import ALARM_IDS, ALARMS, AlarmTuning, clock_minutes
from test_settings import load, problems_of

DEV_LIKE = {"removalPolicy": "destroy"}


def test_defaults_turn_everything_on_except_the_optional_parts():
    ops = load().operations
    assert (ops.alarm_email, ops.alarms, ops.dashboard, ops.uptime_minutes, ops.smoke_check) == (None, {}, True, 5, True)
    assert ops.idle_schedule is None and ops.monthly_budget_usd is None
    assert all(ops.alarm(a) == AlarmTuning() for a in ALARM_IDS)


def test_alarm_address_defaults_to_redcap_email_and_can_be_its_own():
    assert load().alarm_email == "redcap-admin@example.org"
    assert load(operations={"alarmEmail": "ops@example.org"}).alarm_email == "ops@example.org"
    # A stage with a zone and no address at all: alarms exist, nobody is subscribed (docs say how).
    assert load(email=None, domain="example.org", zoneDelegated=True).alarm_email is None


def test_alarm_tuning_is_read_per_alarm():
    ops = load(operations={"alarms": {"siteLatency": {"threshold": 20, "minutes": 30},
                                      "wafBlockedSpike": {"enabled": False}}}).operations
    assert ops.alarm("siteLatency") == AlarmTuning(enabled=True, threshold=20.0, minutes=30)
    assert ops.alarm("wafBlockedSpike").enabled is False
    assert ops.alarm("uptime") == AlarmTuning()


@pytest.mark.parametrize("alarms, message", [
    ({"siteLatncy": {}}, "redcap:operations.alarms = {\"siteLatncy\": {}}: allowed: alarm ids siteErrorRate, "
                         "siteLatency, unhealthyTargets, tasksBelowMinimum, uptime, cronFailures, cronStopped, "
                         "cronErrors, dbCapacityAtMax, dbConnections, dbReplicaLag, wafBlockedSpike, sesBounceRate, "
                         "sesComplaintRate, imageBuildFailed, buildTriggerErrors, certificateExpiry (unknown: "
                         "siteLatncy); example: {siteLatency: {threshold: 20}, wafBlockedSpike: {enabled: false}}"),
    ({"siteLatency": {"threshold": "slow"}}, "allowed: for siteLatency.threshold a number; example: 10"),
    ({"siteLatency": {"threshold": 0}},
     "allowed: for siteLatency.threshold 0.1 to 4000 (seconds (p99 response time)); example: {siteLatency: {threshold: 10}}"),
    ({"siteLatency": {"minutes": 7}},
     "allowed: for siteLatency.minutes a multiple of its 5-minute period; example: {siteLatency: {minutes: 15}}"),
    ({"uptime": {"minutes": 2000}}, "allowed: for uptime.minutes a whole number of minutes from 1 to 1440; example: 15"),
    ({"cronErrors": {"enabled": "maybe"}}, "allowed: for cronErrors.enabled true or false; example: true"),
    ({"uptime": {"off": True}},
     "allowed: for uptime the keys enabled, threshold, minutes (unknown: off); example: {uptime: {threshold: 1}}"),
    ({"cronErrors": False},
     "allowed: for cronErrors an object {enabled, threshold, minutes}; example: {cronErrors: {enabled: false}}"),
    (["uptime"], "allowed: an object keyed by alarm id (docs/operations.md)"),
])
def test_alarm_tuning_errors(alarms, message):
    text = problems_of(operations={"alarms": alarms})
    assert "redcap:operations.alarms = " in text and message in text


def test_every_alarm_has_a_period_its_default_fits_and_a_unit():
    for kind in ALARMS:
        assert kind.period_seconds in (60, 300, 3600, 86400), kind.id
        assert (kind.default_minutes * 60) % kind.period_seconds == 0, kind.id
        assert kind.unit and kind.lowest <= (kind.default_threshold or kind.lowest) <= kind.highest, kind.id


@pytest.mark.parametrize("key, value, message", [
    ("uptimeMinutes", 61, "redcap:operations.uptimeMinutes = 61: allowed: 1 to 60 minutes between uptime checks"),
    ("uptimeMinutes", "often", "redcap:operations.uptimeMinutes = 'often': allowed: 1 to 60 minutes"),
    ("monthlyBudgetUsd", 0, "redcap:operations.monthlyBudgetUsd = 0: allowed: US dollars per month from 1 to 1000000; example: 300"),
    ("monthlyBudgetUsd", True, "redcap:operations.monthlyBudgetUsd = true: allowed: US dollars per month"),
    ("alarmEmail", "ops-at-example.org", "redcap:operations.alarmEmail = 'ops-at-example.org': allowed: an e-mail address"),
    ("dashboard", "yes", "redcap:operations.dashboard = 'yes': allowed: true or false; example: true"),
    ("smokeCheck", "no", "redcap:operations.smokeCheck = 'no': allowed: true or false; example: true"),
    ("alarmsOff", True, "redcap:operations.alarmsOff = true: unknown key; allowed: alarmEmail, alarms, dashboard, "
                        "idleSchedule, monthlyBudgetUsd, smokeCheck, uptimeMinutes"),
])
def test_operations_key_errors(key, value, message):
    assert message in problems_of(operations={key: value})


def test_budget_needs_an_address():
    text = problems_of(email=None, domain="example.org", zoneDelegated=True, operations={"monthlyBudgetUsd": 100})
    assert ("redcap:operations.alarmEmail = null: allowed: an address for the budget's alerts: "
            "redcap:operations.alarmEmail, or redcap:email (the default); example: operations: "
            "{alarmEmail: redcap-ops@example.org}") in text
    assert load(operations={"monthlyBudgetUsd": 99.999}).operations.monthly_budget_usd == 100.0


# --- idle schedule ------------------------------------------------------------------------------

def test_idle_schedule_defaults_and_normalisation():
    schedule = load(**DEV_LIKE, operations={"idleSchedule": {
        "timezone": "Europe/Berlin", "workdays": ["Fri", "mon", "Tuesday"]}}).operations.idle_schedule
    assert schedule.workdays == ("mon", "tue", "fri")  # week order, three-letter names
    assert (schedule.start, schedule.end) == ("07:00", "19:00")
    assert schedule.awake_minutes_per_week == 3 * 12 * 60
    assert clock_minutes("23:59") == 1439


@pytest.mark.parametrize("schedule, message", [
    ({}, "redcap:operations.idleSchedule.timezone = null: required; example: Europe/Berlin"),
    ({"timezone": "Mars/Base"}, "redcap:operations.idleSchedule.timezone = 'Mars/Base': allowed: an IANA time zone name"),
    ({"timezone": "UTC", "start": "7am"},
     "redcap:operations.idleSchedule.start = '7am': allowed: a time of day HH:MM (24-hour clock); example: 07:30"),
    ({"timezone": "UTC", "end": "24:00"}, "redcap:operations.idleSchedule.end = '24:00': allowed: a time of day HH:MM"),
    ({"timezone": "UTC", "start": "19:00", "end": "07:00"},
     "allowed: start before end on the same day, at least an hour apart (the app tier is up from start to end on "
     "each workday); example: {start: '07:00', end: '19:00'}"),
    ({"timezone": "UTC", "start": "07:00", "end": "07:30"}, "at least an hour apart"),
    ({"timezone": "UTC", "workdays": []}, "redcap:operations.idleSchedule.workdays = []: allowed: a non-empty list of days"),
    ({"timezone": "UTC", "workdays": ["mon", "someday"]}, "allowed: a non-empty list of days mon, tue, wed, thu, fri, sat, sun"),
])
def test_idle_schedule_errors(schedule, message):
    assert message in problems_of(**DEV_LIKE, operations={"idleSchedule": schedule})


def test_idle_schedule_is_for_stages_without_deletion_protection():
    text = problems_of(operations={"idleSchedule": {"timezone": "UTC"}})  # default: snapshot, protected
    assert ("redcap:operations.idleSchedule = 'with deletion protection': allowed: an idle schedule only on a "
            "stage without deletion protection (a stage that protects its data is production, which stays up); "
            "set redcap:deletionProtection false for a test stage that keeps data; example: "
            "deletionProtection: false") in text
    assert load(deletionProtection=False, operations={"idleSchedule": {"timezone": "UTC"}}).operations.idle_schedule


def test_the_uptime_check_and_its_alarm_cannot_be_switched_off():
    assert ("redcap:operations.uptimeMinutes = 0: allowed: 1 to 60 minutes between uptime checks (every public "
            "entry has one); example: 5") in problems_of(operations={"uptimeMinutes": 0})
    assert ("redcap:operations = {\"alarms\": {\"uptime\": {\"enabled\": false}}}: allowed: the uptime alarm on "
            "(every public entry has an uptime check with an alarm, which the policy pack requires); tune "
            "alarms.uptime.minutes, or uptimeMinutes, instead; example: {alarms: {uptime: {minutes: 30}}}"
            ) in problems_of(operations={"alarms": {"uptime": {"enabled": False}}})
    assert load(operations={"alarms": {"uptime": {"minutes": 30}}}).operations.alarm("uptime").minutes == 30


def test_operations_problems_are_reported_with_the_others():
    text = problems_of(port=80, operations={"uptimeMinutes": 0, "alarms": {"nope": {}}})
    assert "(3 problems)" in text and "redcap:port" in text
