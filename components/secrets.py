"""A Secrets Manager secret encrypted with the stack key, with its value: the pair every secret
of the stack is (`<name>` and `<name>-value`). The value is always marked secret, so it stays
masked in state and logs whatever it was built from.

The exception are the secrets of IAM access keys (`rotated_key_user`): created empty, their
values are made and rotated by components/rotation.py, so no key is ever in Pulumi's state."""
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


def rotated_key_user(*, user: str, policy: str, secret: str, user_policy: pulumi.Input[str],
                     kms_key_arn: pulumi.Input[str], description: str,
                     opts: pulumi.ResourceOptions) -> tuple[aws.iam.User, aws.secretsmanager.Secret]:
    """An IAM user (logical name `user`) with its inline policy, whose access key lives in the
    empty secret `secret` until the rotation makes it. `force_destroy` lets `pulumi destroy`
    delete the user together with the keys the rotation made."""
    iam_user = aws.iam.User(user, path="/redcap/", force_destroy=True, opts=opts)
    aws.iam.UserPolicy(policy, user=iam_user.name, policy=user_policy, opts=opts)
    holder = aws.secretsmanager.Secret(
        secret, kms_key_id=kms_key_arn, description=f"{description}, made and rotated by the key-rotation function",
        opts=opts)
    return iam_user, holder
