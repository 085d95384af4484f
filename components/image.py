"""Image: the ECR repository and the REDCap image in it, pinned by an immutable tag.

Tag = `<REDCap version or deployTag>-<12 hex>`, the hex naming the build context's content
(container/ files, the REDCap zip - or its S3 location and ETag -, language files, configuration
SQL, and where the RDS CA bundle comes from). Same inputs, same tag: nothing is built and the
services see no diff. Changed inputs, new tag: the image is built and pushed, and the services
roll to it in the same `pulumi up`. Tags are immutable in ECR, so a tag names one image forever.

Two ways to build (redcap:imageBuild):
- codebuild (default): the context is zipped deterministically and uploaded to a private,
  KMS-encrypted artifacts bucket; a CodeBuild project (private subnets, stack key, privileged for
  Docker, logs with retention) builds it for linux/amd64 and pushes the tag. A Lambda
  (functions/build_trigger.py), invoked once per tag by aws.lambda_.Invocation, starts the build
  and waits for it, failing `pulumi up` with the build's log link when it fails. It runs one at a
  time (reserved concurrency 1) and only signed code: its zip (deterministic bytes) is uploaded
  to the versioned artifacts bucket, an AWS Signer job signs exactly that object version, and
  the function deploys the signed copy under a code-signing configuration that enforces the
  signature (a new job only when the zip changes; docs/security.md).
- local: pulumi-docker builds the same context on the machine running `pulumi up` and pushes the
  same tag scheme.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random
import yaml

from components import buckets, policies
from components.context import AwsContext
from components.lambdas import FunctionSpec, SignedCode, logged_function, write_logs
from components.paths import FUNCTIONS_DIR, project_relative
from container import context as build_context

RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
CODEBUILD_IMAGE = "aws/codebuild/standard:7.0"
BUILD_TIMEOUT_MINUTES = 60
QUEUED_TIMEOUT_MINUTES = 480
KEEP_IMAGES = 10
HASH_LENGTH = 12
MAX_TAG_LENGTH = 128
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same files give the same zip bytes
TRIGGER_MODULE = "build_trigger"  # functions/build_trigger.py
# AWS Signer's platform for Lambda code, and how long a signature is valid (Lambda refuses to
# deploy code whose signature expired; deployed code keeps running).
SIGNING_PLATFORM = "AWSLambda-SHA384-ECDSA"
SIGNATURE_VALIDITY_MONTHS = 135
ARTIFACT_NONCURRENT_DAYS = 7  # earlier versions of build contexts and function zips: all reproducible


@dataclass(frozen=True)
class ImageArgs:
    context: AwsContext
    build: Literal["codebuild", "local"]
    tag_prefix: str
    port: int
    kms_key_arn: pulumi.Input[str]
    config_sql: Path
    build_dir: Path
    redcap_zip: Optional[Path] = None
    redcap_s3_uri: Optional[str] = None
    languages_dir: Optional[Path] = None
    modules_dir: Optional[Path] = None
    # CodeBuild only: where it runs and where the artifacts bucket logs.
    vpc_id: Optional[pulumi.Input[str]] = None
    private_subnet_ids: Optional[pulumi.Input[Sequence[str]]] = None
    log_bucket_name: Optional[pulumi.Input[str]] = None
    log_retention_days: int = 365
    # local only: the RDS CA bundle (CodeBuild downloads it itself).
    ca_bundle: Optional[Path] = None
    keep_images: int = KEEP_IMAGES


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------

def repository_name(stack: str) -> str:
    """ECR names: lowercase letters, digits, . _ - and /."""
    return re.sub(r"[^a-z0-9._-]+", "-", f"redcap-{stack}".lower()).strip("-")


def image_tag(prefix: str, context_digest: str, source_etag: Optional[str] = None) -> str:
    """`<prefix>-<12 hex>`; the hex covers the context and, for an S3 source, the zip's ETag."""
    digest = hashlib.sha256(f"{context_digest}\n{source_etag or ''}".encode()).hexdigest()[:HASH_LENGTH]
    return f"{prefix[:MAX_TAG_LENGTH - HASH_LENGTH - 1]}-{digest}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def lifecycle_policy(keep: int) -> str:
    return json.dumps({"rules": [{
        "rulePriority": 1,
        "description": f"keep the last {keep} images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
        "action": {"type": "expire"},
    }]}, sort_keys=True)


def buildspec(s3_source: bool) -> str:
    """CodeBuild's instructions. The context arrives as the S3 source; the build adds the RDS CA
    bundle (and the REDCap zip when it lives in S3), builds for linux/amd64 and pushes one tag."""
    pre_build = [
        'test -n "${IMAGE_TAG:-}" || { echo "IMAGE_TAG is not set" >&2; exit 1; }',
        f"curl -fsSL --retry 3 -o rds-ca-bundle.pem {RDS_CA_BUNDLE_URL}",
        "grep -q 'BEGIN CERTIFICATE' rds-ca-bundle.pem",
        "mkdir -p languages modules",
    ]
    if s3_source:
        pre_build.append('aws s3 cp --only-show-errors "$REDCAP_S3_URI" redcap.zip')
    pre_build += [
        'REGISTRY="${REPOSITORY_URI%%/*}"',
        'aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "$REGISTRY"',
    ]
    spec = {
        "version": 0.2,
        "env": {"shell": "bash"},
        "phases": {
            "pre_build": {"on-failure": "ABORT", "commands": pre_build},
            "build": {"on-failure": "ABORT", "commands": [
                'docker build --platform linux/amd64 --build-arg PORT="$PORT" -t "$REPOSITORY_URI:$IMAGE_TAG" .']},
            "post_build": {"commands": [
                # post_build runs after a failed build too: push only what was built.
                'test "$CODEBUILD_BUILD_SUCCEEDING" = 1',
                'docker push "$REPOSITORY_URI:$IMAGE_TAG"']},
        },
    }
    return yaml.safe_dump(spec, sort_keys=False, width=1000)


CONTEXT_DIRECTORIES = ("languages/", "modules/")


def write_deterministic_zip(files: dict[str, Path], dest: Path, directories: Sequence[str] = CONTEXT_DIRECTORIES) -> Path:
    """Zip `files` (archive path -> source) with fixed timestamps and modes, sorted by path, so
    the same files always give the same bytes (and Pulumi sees no change in the asset).

    Entries are stored, not deflated: deflate output depends on the zlib build (zlib, zlib-ng,
    Apple's), so the same files deflated on another machine would be other bytes - a diff on
    the context object from there. The bulk of the context (the REDCap zip) is compressed already.
    `directories` are empty folder entries written first (the build context's `languages/`
    and `modules/`, which the Dockerfile copies even when empty)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for folder in directories:
            directory = zipfile.ZipInfo(folder, ZIP_EPOCH)
            directory.external_attr = (0o40755 << 16) | 0x10
            archive.writestr(directory, b"")
        for rel in sorted(files):
            info = zipfile.ZipInfo(rel, ZIP_EPOCH)
            executable = files[rel].stat().st_mode & 0o100
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, files[rel].read_bytes())
    tmp.replace(dest)
    return dest


def archive_matches(archive: Path, files: dict[str, Path]) -> bool:
    """Whether a cached context zip is the one write_deterministic_zip makes of `files` (same
    entries, stored, same sizes); one written otherwise (e.g. deflated by an older version) is
    rewritten, so every machine uploads the same bytes."""
    if not archive.is_file():
        return False
    try:
        with zipfile.ZipFile(archive) as existing:
            entries = existing.infolist()
    except (zipfile.BadZipFile, OSError):
        return False
    if [i.filename for i in entries] != [*CONTEXT_DIRECTORIES, *sorted(files)]:
        return False
    sizes = {rel: src.stat().st_size for rel, src in files.items()}
    return all(i.compress_type == zipfile.ZIP_STORED for i in entries) and all(
        i.file_size == sizes[i.filename] for i in entries if i.filename not in CONTEXT_DIRECTORIES)


def context_is_complete(context_dir: Path, files: dict[str, Path]) -> bool:
    """Whether `context_dir` holds exactly `files` (archive path -> source), each at its
    source's size: a folder left by an interrupted copy is not taken for the context."""
    if not context_dir.is_dir():
        return False
    present = {p.relative_to(context_dir).as_posix(): p for p in context_dir.rglob("*") if p.is_file()}
    return set(present) == set(files) and all(present[rel].stat().st_size == src.stat().st_size
                                              for rel, src in files.items())


def ensure_local_context(context_dir: Path, inputs: dict) -> Path:
    """The assembled context for a local build, reused when complete. It is assembled in a
    temporary sibling and renamed into place, so an interrupted `pulumi up` never leaves a
    partial folder under the final name (which a retry would otherwise build from forever)."""
    if context_is_complete(context_dir, build_context.context_files(**inputs)):
        return context_dir
    staging = context_dir.with_name(f"{context_dir.name}.tmp-{os.getpid()}")
    try:
        build_context.assemble_context(staging, **inputs)
        if context_dir.exists():
            shutil.rmtree(context_dir)
        staging.rename(context_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return context_dir


def function_zip(source: Path, build_dir: Path) -> tuple[Path, str]:
    """A Lambda zip of one handler file, with deterministic bytes, and its 12-hex digest."""
    staging = build_dir / "functions" / f"{source.stem}.zip"
    write_deterministic_zip({source.name: source}, staging, directories=())
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()[:HASH_LENGTH]
    final = staging.with_name(f"{source.stem}-{digest}.zip")
    staging.replace(final)
    return final, digest


def signing_profile_name(stack: str, suffix_hex: str) -> str:
    """Signer profile names: letters, digits and underscores, at most 64 (and never reusable
    once the profile is cancelled, hence the suffix kept in state)."""
    return re.sub(r"[^A-Za-z0-9]", "_", f"redcap_{stack}")[:64 - 9] + f"_{suffix_hex}"


def ensure_ca_bundle(path: Path, url: str = RDS_CA_BUNDLE_URL) -> Path:
    """The RDS CA bundle for local builds: downloaded once into the build directory."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (fixed https URL)
            data = response.read()
        if b"BEGIN CERTIFICATE" not in data:
            raise RuntimeError(f"{url} did not return a PEM bundle")
        path.write_bytes(data)
    return path


def codebuild_policy(*, partition: str, region: str, account_id: str, log_group_arn: str, artifacts_bucket_arn: str,
                     repository_arn: str, kms_key_arn: str, subnet_arns: Sequence[str],
                     redcap_object_arn: Optional[str]) -> str:
    network_interfaces = f"arn:{partition}:ec2:{region}:{account_id}:network-interface/*"
    statements = [
        policies.allow(["logs:CreateLogStream", "logs:PutLogEvents"], [log_group_arn, f"{log_group_arn}:*"],
                       sid="WriteBuildLogs"),
        policies.allow(["s3:GetObject", "s3:GetObjectVersion"], [f"{artifacts_bucket_arn}/contexts/*"],
                       sid="ReadBuildContext"),
        policies.allow(["s3:GetBucketAcl", "s3:GetBucketLocation"], [artifacts_bucket_arn], sid="SourceBucket"),
        policies.allow(["kms:Decrypt", "kms:GenerateDataKey"], [kms_key_arn], sid="UseStackKey"),
        # ECR issues registry login tokens account-wide: the action has no resource type.
        policies.allow(["ecr:GetAuthorizationToken"], ["*"], sid="RegistryLogin"),
        policies.allow(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
                        "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage",
                        "ecr:UploadLayerPart"], [repository_arn], sid="PushImage"),
        # CodeBuild in a VPC: EC2's Describe* actions have no resource-level permissions.
        policies.allow(["ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups",
                        "ec2:DescribeSubnets", "ec2:DescribeVpcs"], ["*"], sid="DescribeVpc"),
        policies.allow(["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface"],
                       [network_interfaces, f"arn:{partition}:ec2:{region}:{account_id}:subnet/*",
                        f"arn:{partition}:ec2:{region}:{account_id}:security-group/*"], sid="BuildNetworkInterfaces"),
        policies.allow(["ec2:CreateNetworkInterfacePermission"], [network_interfaces], sid="AttachToBuild",
                       Condition={"StringEquals": {"ec2:AuthorizedService": "codebuild.amazonaws.com"},
                                  "ArnEquals": {"ec2:Subnet": sorted(subnet_arns)}}),
    ]
    if redcap_object_arn:
        statements.append(policies.allow(["s3:GetObject"], [redcap_object_arn], sid="ReadRedcapRelease"))
    return policies.document(statements)


def trigger_policy(*, log_group_arn: str, project_arn: str, repository_arn: str) -> str:
    return policies.document([
        write_logs(log_group_arn),
        policies.allow(["codebuild:BatchGetBuilds", "codebuild:ListBuildsForProject", "codebuild:StartBuild"],
                       [project_arn], sid="RunBuilds"),
        policies.allow(["ecr:DescribeImages"], [repository_arn], sid="FindTag"),
    ])


# --------------------------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------------------------

class Image(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    repository_name: pulumi.Output[str]
    tag: pulumi.Output[str]
    image_uri: pulumi.Output[str]
    # CodeBuild only (None for local builds): what the pipeline alarms watch.
    build_project_name: Optional[pulumi.Output[str]] = None
    build_trigger_function_name: Optional[pulumi.Output[str]] = None

    def __init__(self, name: str, args: ImageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("redcap:image:Image", name, None, opts)
        if (args.redcap_zip is None) == (args.redcap_s3_uri is None):
            raise ValueError("ImageArgs needs exactly one of redcap_zip and redcap_s3_uri")
        if args.build == "local" and args.redcap_zip is None:
            raise ValueError("a local build needs the REDCap zip on this machine (redCapLocalVersion)")
        ctx = args.context
        child = pulumi.ResourceOptions(parent=self)

        repo = aws.ecr.Repository(
            f"{name}-repository", name=repository_name(ctx.stack),
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": args.kms_key_arn}],
            # Images are rebuilt from the context at will; they hold no data.
            force_delete=True,
            opts=child)
        aws.ecr.LifecyclePolicy(f"{name}-repository-lifecycle", repository=repo.name,
                                policy=lifecycle_policy(args.keep_images), opts=child)

        if args.build == "local":
            tag, image_uri = self._local(name, args, repo, child)
        else:
            tag, image_uri = self._codebuild(name, args, repo, child)

        self.repository_url = repo.repository_url
        self.repository_arn = repo.arn
        self.repository_name = repo.name
        self.tag = tag
        self.image_uri = image_uri
        self.register_outputs({
            "repositoryUrl": self.repository_url,
            "imageTag": self.tag,
            "imageUri": self.image_uri,
        })

    # -- local ------------------------------------------------------------------------------

    def _local(self, name: str, args: ImageArgs, repo: aws.ecr.Repository,
               child: pulumi.ResourceOptions) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        import pulumi_docker as docker

        assert args.redcap_zip is not None
        ca_bundle = args.ca_bundle or ensure_ca_bundle(args.build_dir / "rds-ca-bundle.pem")
        inputs = dict(redcap_zip=args.redcap_zip, languages_dir=args.languages_dir, config_sql=args.config_sql,
                      ca_bundle=ca_bundle, modules_dir=args.modules_dir)
        tag = image_tag(args.tag_prefix, build_context.context_hash(**inputs))
        context_dir = ensure_local_context(args.build_dir / "contexts" / tag, inputs)
        token = aws.ecr.get_authorization_token_output(registry_id=repo.registry_id)
        image = docker.Image(
            f"{name}-image",
            image_name=repo.repository_url.apply(lambda url: f"{url}:{tag}"),
            build=docker.DockerBuildArgs(
                context=project_relative(context_dir), dockerfile=project_relative(context_dir / "Dockerfile"),
                platform="linux/amd64", args={"PORT": str(args.port)}, builder_version="BuilderBuildKit"),
            registry=docker.RegistryArgs(server=repo.repository_url, username=token.user_name,
                                         password=pulumi.Output.secret(token.password)),
            skip_push=False,
            opts=child)
        return pulumi.Output.from_input(tag), image.image_name

    # -- CodeBuild --------------------------------------------------------------------------

    def _codebuild(self, name: str, args: ImageArgs, repo: aws.ecr.Repository,
                   child: pulumi.ResourceOptions) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        ctx = args.context
        if args.vpc_id is None or args.private_subnet_ids is None or args.log_bucket_name is None:
            raise ValueError("a CodeBuild build needs vpc_id, private_subnet_ids and log_bucket_name")
        stand_ins = args.build_dir / "stand-ins"
        stand_ins.mkdir(parents=True, exist_ok=True)
        # CodeBuild downloads the CA bundle (and an S3-hosted REDCap zip) itself; the context
        # carries where they come from, so a different source gives a different tag.
        ca_stand_in = stand_ins / "rds-ca-bundle.pem"
        ca_stand_in.write_text(f"downloaded by the build from {RDS_CA_BUNDLE_URL}\n")
        redcap_zip = args.redcap_zip
        if redcap_zip is None:
            redcap_zip = stand_ins / "redcap.zip"
            redcap_zip.write_text(f"downloaded by the build from {args.redcap_s3_uri}\n")
        inputs = dict(redcap_zip=redcap_zip, languages_dir=args.languages_dir, config_sql=args.config_sql,
                      ca_bundle=ca_stand_in, modules_dir=args.modules_dir)
        files = build_context.context_files(**inputs)
        digest = build_context.context_hash(**inputs)
        archive = args.build_dir / "contexts" / f"{digest}.zip"
        if not archive_matches(archive, files):
            write_deterministic_zip(files, archive)

        redcap_object_arn: Optional[pulumi.Output[str]] = None
        if args.redcap_s3_uri:
            bucket, key = parse_s3_uri(args.redcap_s3_uri)
            # The ETag is part of the tag: a zip replaced at the same key is a new image.
            # download_body is a string in pulumi-aws 7 ("false": metadata only, no body).
            etag = aws.s3.get_object_output(bucket=bucket, key=key, download_body="false").etag
            tag = etag.apply(lambda e: image_tag(args.tag_prefix, digest, (e or "").strip('"')))
            redcap_object_arn = ctx.partition.apply(lambda p: f"arn:{p}:s3:::{bucket}/{key}")
        else:
            tag = pulumi.Output.from_input(image_tag(args.tag_prefix, digest))

        artifacts, versioning = self._artifacts_bucket(name, args, child)
        context_object = aws.s3.BucketObjectv2(
            f"{name}-build-context", bucket=artifacts.id, key=tag.apply(lambda t: f"contexts/{t}.zip"),
            source=pulumi.FileAsset(project_relative(archive)), content_type="application/zip",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))
        source_location = pulumi.Output.all(artifacts.bucket, context_object.key).apply(lambda a: f"{a[0]}/{a[1]}")

        group = aws.cloudwatch.LogGroup(
            f"{name}-build-logs", name=f"/aws/codebuild/redcap-{ctx.stack}-image",
            retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn, opts=child)
        build_sg = aws.ec2.SecurityGroup(
            f"{name}-build-network", vpc_id=args.vpc_id,
            description="REDCap image build: HTTPS to AWS APIs and HTTP(S) to the Debian archive", opts=child)
        for port in (443, 80):
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-build-network-egress-{port}", security_group_id=build_sg.id, ip_protocol="tcp",
                from_port=port, to_port=port, cidr_ipv4="0.0.0.0/0",
                description="Debian packages, ECR, S3 and the RDS CA bundle", opts=child)

        role = aws.iam.Role(
            f"{name}-build-role",
            assume_role_policy=ctx.account_id.apply(lambda a: policies.assume_role_policy("codebuild.amazonaws.com", a)),
            opts=child)
        subnet_arns = pulumi.Output.all(ctx.partition, ctx.account_id, args.private_subnet_ids).apply(
            lambda a: [f"arn:{a[0]}:ec2:{ctx.region}:{a[1]}:subnet/{s}" for s in a[2]])
        build_policy = aws.iam.RolePolicy(
            f"{name}-build-policy", role=role.id,
            policy=pulumi.Output.all(ctx.partition, ctx.account_id, group.arn, artifacts.arn, repo.arn,
                                     args.kms_key_arn, subnet_arns, redcap_object_arn).apply(
                lambda a: codebuild_policy(partition=a[0], region=ctx.region, account_id=a[1], log_group_arn=a[2],
                                           artifacts_bucket_arn=a[3], repository_arn=a[4], kms_key_arn=a[5],
                                           subnet_arns=a[6], redcap_object_arn=a[7])),
            opts=child)

        variables = [
            {"name": "REPOSITORY_URI", "value": repo.repository_url},
            {"name": "PORT", "value": str(args.port)},
            {"name": "IMAGE_TAG", "value": tag},
        ]
        if args.redcap_s3_uri:
            variables.append({"name": "REDCAP_S3_URI", "value": args.redcap_s3_uri})
        project = aws.codebuild.Project(
            f"{name}-build", name=f"redcap-{ctx.stack}-image",
            description=f"REDCap {ctx.stack}: builds and pushes the container image",
            service_role=role.arn,
            encryption_key=args.kms_key_arn,
            build_timeout=BUILD_TIMEOUT_MINUTES, queued_timeout=QUEUED_TIMEOUT_MINUTES,
            source={"type": "S3", "location": source_location, "buildspec": buildspec(args.redcap_s3_uri is not None)},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={"type": "LINUX_CONTAINER", "compute_type": "BUILD_GENERAL1_MEDIUM",
                         "image": CODEBUILD_IMAGE, "privileged_mode": True,
                         "image_pull_credentials_type": "CODEBUILD", "environment_variables": variables},
            vpc_config={"vpc_id": args.vpc_id, "subnets": args.private_subnet_ids,
                        "security_group_ids": [build_sg.id]},
            logs_config={"cloudwatch_logs": {"status": "ENABLED", "group_name": group.name},
                         "s3_logs": {"status": "DISABLED"}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[build_policy]))

        invocation = self._trigger(name, args, repo, project, source_location, tag, context_object,
                                   self._signed_trigger_code(name, args, artifacts, versioning))
        self.build_project_name = project.name
        self.build_trigger_function_name = invocation.function_name
        image_uri = pulumi.Output.all(repo.repository_url, tag, invocation.result).apply(lambda a: f"{a[0]}:{a[1]}")
        return tag, image_uri

    def _artifacts_bucket(self, name: str, args: ImageArgs,
                          child: pulumi.ResourceOptions) -> tuple[aws.s3.Bucket, aws.s3.BucketVersioning]:
        """Private, TLS-only, SSE-KMS with the stack key, access-logged: the same hardening as
        the app bucket. Versioned, because AWS Signer signs one version of an object. It holds
        what the project folder reproduces (build contexts, the trigger's zip and its signed
        copies, which Signer writes and Pulumi does not track), so `pulumi destroy` empties it
        whatever the stage keeps."""
        bucket = buckets.private_bucket(f"{name}-artifacts", force_destroy=True, parent=self)
        buckets.encrypt_with_key(f"{name}-artifacts", bucket, args.kms_key_arn, self)
        buckets.tls_only(f"{name}-artifacts", bucket, self)
        buckets.log_access(f"{name}-artifacts", bucket, args.log_bucket_name, "artifacts", self)
        versioning = aws.s3.BucketVersioning(
            f"{name}-artifacts-versioning", bucket=bucket.id,
            versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-artifacts-lifecycle", bucket=bucket.id,
            rules=[{"id": "abort-uploads", "status": "Enabled", "filter": {"prefix": ""},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                    "noncurrent_version_expiration": {"noncurrent_days": ARTIFACT_NONCURRENT_DAYS},
                    "expiration": {"expired_object_delete_marker": True}}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))
        return bucket, versioning

    def _signed_trigger_code(self, name: str, args: ImageArgs, artifacts: aws.s3.Bucket,
                             versioning: aws.s3.BucketVersioning) -> SignedCode:
        """The trigger's zip, uploaded, signed by AWS Signer, and the code-signing configuration
        that makes Lambda accept only code signed by this profile."""
        child = pulumi.ResourceOptions(parent=self)
        archive, digest = function_zip(FUNCTIONS_DIR / f"{TRIGGER_MODULE}.py", args.build_dir)
        code = aws.s3.BucketObjectv2(
            f"{name}-trigger-code", bucket=artifacts.id, key=f"functions/build_trigger-{digest}.zip",
            source=pulumi.FileAsset(project_relative(archive)), content_type="application/zip",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))
        suffix = random.RandomId(f"{name}-signing-suffix", byte_length=4, opts=child)
        profile = aws.signer.SigningProfile(
            f"{name}-signing", name=suffix.hex.apply(lambda h: signing_profile_name(args.context.stack, h)),
            platform_id=SIGNING_PLATFORM,
            signature_validity_period={"value": SIGNATURE_VALIDITY_MONTHS, "type": "MONTHS"}, opts=child)
        # A job per object version: the same zip is signed once, a changed one gets a new job.
        job = aws.signer.SigningJob(
            f"{name}-trigger-signing", profile_name=profile.name,
            source={"s3": {"bucket": artifacts.id, "key": code.key, "version": code.version_id}},
            destination={"s3": {"bucket": artifacts.id, "prefix": "signed/"}},
            ignore_signing_job_failure=False, opts=child)
        config = aws.lambda_.CodeSigningConfig(
            f"{name}-code-signing", description=f"REDCap {args.context.stack}: only code signed by this stack's profile",
            allowed_publishers={"signing_profile_version_arns": [profile.version_arn]},
            policies={"untrusted_artifact_on_deployment": "Enforce"}, opts=child)
        signed = job.signed_objects.apply(lambda objects: objects[0].s3s[0])
        return SignedCode(bucket=signed.apply(lambda o: o.bucket), key=signed.apply(lambda o: o.key),
                          code_signing_config_arn=config.arn)

    def _trigger(self, name: str, args: ImageArgs, repo: aws.ecr.Repository, project: aws.codebuild.Project,
                 source_location: pulumi.Output[str], tag: pulumi.Output[str], context_object: aws.s3.BucketObjectv2,
                 code: SignedCode) -> aws.lambda_.Invocation:
        # Lambda's maximum timeout (the default): longer builds are adopted by the next `pulumi up`.
        function = logged_function(f"{name}-trigger", args.context, FunctionSpec(
            function_name=f"redcap-{args.context.stack}-image-build", module=TRIGGER_MODULE,
            description="Builds the REDCap image for a tag in CodeBuild and waits for the result",
            policy=lambda group_arn: pulumi.Output.all(group_arn, project.arn, repo.arn).apply(
                lambda a: trigger_policy(log_group_arn=a[0], project_arn=a[1], repository_arn=a[2])),
            kms_key_arn=args.kms_key_arn, log_retention_days=args.log_retention_days, memory_mb=256,
            # One build at a time: a second `pulumi up` meanwhile is throttled, not a second build.
            reserved_concurrency=1, signed_code=code), self, function_resource=f"{name}-trigger")
        event = pulumi.Output.all(project.name, repo.name, tag, source_location).apply(lambda a: json.dumps({
            "projectName": a[0], "repositoryName": a[1], "imageTag": a[2], "sourceLocation": a[3],
            "maxBuildHours": (BUILD_TIMEOUT_MINUTES + QUEUED_TIMEOUT_MINUTES) / 60 + 1,
        }, sort_keys=True))
        # A new input (a new tag) is a new invocation; the same tag invokes nothing.
        return aws.lambda_.Invocation(
            f"{name}-build-invocation", function_name=function.name, input=event,
            lifecycle_scope="CREATE_ONLY",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[context_object, project]))


def config_sql_path(sql_dir: Path) -> Path:
    """The generated configuration SQL when there is one, else the shipped default."""
    generated = sql_dir / "redcap-config.sql"
    return generated if generated.is_file() else sql_dir / "redcap-config.default.sql"
