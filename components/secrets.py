"""A Secrets Manager secret encrypted with the stack key, with its value: the pair every secret
of the stack is (`<name>` and `<name>-value`). The value is always marked secret, so it stays
masked in state and logs whatever it was built from."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws


def encrypted_secret(name: str, *, kms_key_arn: pulumi.Input[str], description: str,
                     value: pulumi.Input[str], opts: pulumi.ResourceOptions,
                     write_once: bool = False) -> aws.secretsmanager.Secret:
    """`write_once`: the value is set when the secret is created and never changed by Pulumi."""
    secret = aws.secretsmanager.Secret(name, kms_key_id=kms_key_arn, description=description, opts=opts)
    value_opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["secretString"])) \
        if write_once else opts
    aws.secretsmanager.SecretVersion(
        f"{name}-value", secret_id=secret.id, secret_string=pulumi.Output.secret(value), opts=value_opts)
    return secret
