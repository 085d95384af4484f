"""Facts about the target account that several components need, looked up once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class AwsContext:
    account_id: pulumi.Output[str]
    partition: pulumi.Output[str]
    region: str
    stack: str
    # aws:profile of the stack: a provider the program creates itself (pulumi-aws-native's for
    # the Express runtime) uses the same credentials as the stack's default one.
    profile: Optional[str] = None

    @staticmethod
    def lookup(region: str, stack: str) -> "AwsContext":
        identity = aws.get_caller_identity_output()
        partition = aws.get_partition_output()
        return AwsContext(account_id=identity.account_id, partition=partition.partition,
                          region=region, stack=stack, profile=aws.config.profile)
