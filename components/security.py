"""ThreatDetection: a GuardDuty detector (redcap:guardDuty).

GuardDuty allows ONE detector per account and region: enable this in exactly one stack of an
account/region, and not at all where the organisation already runs GuardDuty (creating a
second detector fails with "a detector already exists"; docs/settings.md says so too). The
original shipped this stack without deploying it; here it is opt-in.

Protection plans (DetectorFeature, which replaces the deprecated `datasources` block in
pulumi-aws v7): S3 data events, as the original, and RDS login events, because the Aurora
cluster holds patient data and GuardDuty watches its logins at no extra setup.
"""
from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws

FEATURES: tuple[str, ...] = ("RDS_LOGIN_EVENTS", "S3_DATA_EVENTS")


class ThreatDetection(pulumi.ComponentResource):
    detector_id: pulumi.Output[str]

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:security:ThreatDetection", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        detector = aws.guardduty.Detector(
            f"{name}-guardduty", enable=True, finding_publishing_frequency="FIFTEEN_MINUTES", opts=child)
        for feature in FEATURES:
            aws.guardduty.DetectorFeature(
                f"{name}-guardduty-{feature.lower().replace('_', '-')}", detector_id=detector.id,
                name=feature, status="ENABLED", opts=child)
        self.detector_id = detector.id
        self.register_outputs({"detectorId": self.detector_id})
