"""The image pipeline (components/image.py): ECR, the CodeBuild build with its trigger Lambda, the
local pulumi-docker build, and the tag that names the build context's content."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import yaml

from compute_support import iam_documents, policy_of, run_variant, run_variant_uncached, statements
from components import image as image_module
from components.image import buildspec, image_tag, lifecycle_policy, write_deterministic_zip
from container import context as build_context
from harness import run_program

ROOT = Path(__file__).resolve().parent.parent


def codebuild_project(run):
    return run.one("aws:codebuild/project:Project")


# -- the tag ------------------------------------------------------------------------------------

def context_inputs(tmp_path: Path, languages: dict[str, str]) -> dict:
    zip_path = tmp_path / "redcap.zip"
    if not zip_path.exists():
        zip_path.write_bytes(b"zip")
        (tmp_path / "ca.pem").write_text("ca")
    lang_dir = tmp_path / "languages"
    lang_dir.mkdir(exist_ok=True)
    for name, text in languages.items():
        (lang_dir / name).write_text(text)
    return dict(redcap_zip=zip_path, languages_dir=lang_dir, config_sql=ROOT / "sql" / "redcap-config.default.sql",
                ca_bundle=tmp_path / "ca.pem")


def test_tag_is_version_plus_content_hash_and_changes_with_any_input(tmp_path):
    first = image_tag("15.0.9", build_context.context_hash(**context_inputs(tmp_path, {})))
    again = image_tag("15.0.9", build_context.context_hash(**context_inputs(tmp_path, {})))
    with_language = image_tag("15.0.9", build_context.context_hash(**context_inputs(tmp_path, {"Spanish.ini": "x"})))
    assert first == again and first.startswith("15.0.9-") and len(first) == len("15.0.9-") + 12
    assert with_language != first
    assert image_tag("15.0.9", "d", source_etag="e1") != image_tag("15.0.9", "d", source_etag="e2")


def test_tag_fits_docker_limits_with_a_long_deploy_tag():
    assert len(image_tag("x" * 128, "d")) == 128


def test_committed_stacks_push_version_hash_tags_never_latest():
    for variant in ("express", "prod"):  # Pulumi.dev.yaml as committed, Pulumi.prod.yaml
        run = run_variant(variant)
        tag = run.outputs["imageTag"]
        assert tag.startswith("15.0.9-") and tag != "latest"
        assert run.outputs["imageUri"] == f"{run.outputs['ecrRepositoryUrl']}:{tag}"


def test_same_inputs_give_the_same_tag_and_identical_inputs():
    first, second = run_variant("dev-apprunner"), run_variant_uncached("dev-apprunner")
    assert first.outputs["imageTag"] == second.outputs["imageTag"]
    # Registration order is concurrent; compare by URN.
    assert {r.urn: r.inputs for r in first.resources} == {r.urn: r.inputs for r in second.resources}


def test_a_zip_replaced_in_s3_at_the_same_key_is_a_new_tag():
    replaced = run_program("dev", call_overrides={"aws:s3/getObject:getObject": lambda args: {
        "bucket": args["bucket"], "key": args["key"], "etag": '"0000000000000000000000000000ffff"'}})
    assert replaced.outputs["imageTag"] != run_variant("dev-apprunner").outputs["imageTag"]
    assert replaced.outputs["imageTag"].startswith("15.0.9-")


def test_a_cached_context_zip_is_reused_only_if_it_is_exactly_the_stored_one(tmp_path):
    files = build_context.context_files(**context_inputs(tmp_path, {"Spanish.ini": "x"}))
    archive = tmp_path / "cached.zip"
    assert not image_module.archive_matches(archive, files)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as old:  # an older, deflated cache
        old.writestr("languages/", b"")
        for rel in sorted(files):
            old.writestr(rel, files[rel].read_bytes())
    assert not image_module.archive_matches(archive, files)
    write_deterministic_zip(files, archive)
    assert image_module.archive_matches(archive, files)
    archive.write_bytes(archive.read_bytes()[:-100])  # truncated
    assert not image_module.archive_matches(archive, files)
    assert not list(tmp_path.glob("*.tmp-*"))


def test_the_etag_lookup_passes_download_body_as_the_string_the_provider_declares():
    """pulumi-aws 7 types `s3.get_object(download_body=...)` as a string ("true"/"false"): a
    Python bool passes the mocks but is not what the provider's schema takes."""
    seen: list[dict] = []

    def get_object(args: dict) -> dict:
        seen.append(args)
        return {"bucket": args["bucket"], "key": args["key"], "etag": '"9b2cf535f27731c974343645a3985328"'}

    run_program("dev", call_overrides={"aws:s3/getObject:getObject": get_object})
    assert seen and all(a.get("downloadBody") == "false" for a in seen), seen
    assert {(a["bucket"], a["key"]) for a in seen} == {("my-redcap-releases", "redcap15.0.9.zip")}


def test_deterministic_context_zip(tmp_path):
    files = build_context.context_files(**context_inputs(tmp_path, {"Spanish.ini": "x"}))
    one = write_deterministic_zip(files, tmp_path / "one.zip").read_bytes()
    two = write_deterministic_zip(files, tmp_path / "two.zip").read_bytes()
    assert one == two
    names = zipfile.ZipFile(tmp_path / "one.zip").namelist()
    assert {"Dockerfile", "redcap.zip", "redcap-config.sql", "rds-ca-bundle.pem", "languages/",
            "languages/Spanish.ini", "modules/"} <= set(names)
    # The Dockerfile copies languages/ and modules/ even when empty: both are folder entries.
    assert names[:2] == ["languages/", "modules/"]
    assert not any(n.startswith("tests/") for n in names)
    # Stored, not deflated: deflate output differs between zlib builds (zlib, zlib-ng, Apple's),
    # so a deflated context would change bytes - and show a diff - from another machine.
    assert {i.compress_type for i in zipfile.ZipFile(tmp_path / "one.zip").infolist()} == {zipfile.ZIP_STORED}


# -- ECR ------------------------------------------------------------------------------------------

def test_repository_scans_is_encrypted_with_the_stack_key_and_tags_are_immutable():
    run = run_variant("prod")
    repo = run.one("aws:ecr/repository:Repository")
    assert repo.inputs["name"] == "redcap-prod"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": run.outputs["kmsKeyArn"]}]
    lifecycle = run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert lifecycle.inputs["repository"] == "redcap-prod"
    rule = json.loads(lifecycle.inputs["policy"])["rules"][0]
    assert rule["selection"] == {"countNumber": 10, "countType": "imageCountMoreThan", "tagStatus": "any"}
    assert rule["action"] == {"type": "expire"}
    assert json.loads(lifecycle_policy(3))["rules"][0]["selection"]["countNumber"] == 3


# -- CodeBuild ------------------------------------------------------------------------------------

def test_codebuild_project_runs_in_the_private_subnets_encrypted_privileged_with_retained_logs():
    run = run_variant("prod")
    project = codebuild_project(run)
    assert project.inputs["name"] == "redcap-prod-image"
    assert project.inputs["encryptionKey"] == run.outputs["kmsKeyArn"]
    assert project.inputs["environment"]["privilegedMode"] is True
    assert project.inputs["environment"]["image"] == "aws/codebuild/standard:7.0"
    assert project.inputs["vpcConfig"]["subnets"] == run.outputs["privateSubnetIds"]
    assert project.inputs["vpcConfig"]["vpcId"] == run.outputs["vpcId"]
    group = run.one("aws:cloudwatch/logGroup:LogGroup", "build-logs")
    assert project.inputs["logsConfig"]["cloudwatchLogs"] == {"status": "ENABLED", "groupName": group.outputs["name"]}
    assert group.inputs["retentionInDays"] == 731 and group.inputs["kmsKeyId"] == run.outputs["kmsKeyArn"]
    variables = {v["name"]: v["value"] for v in project.inputs["environment"]["environmentVariables"]}
    assert variables == {"REPOSITORY_URI": run.outputs["ecrRepositoryUrl"], "PORT": "8080",
                         "IMAGE_TAG": run.outputs["imageTag"],
                         "REDCAP_S3_URI": "s3://my-redcap-releases/redcap15.0.9.zip"}
    build_sg = run.named("redcap-build-network")
    assert project.inputs["vpcConfig"]["securityGroupIds"] == [build_sg.id]
    egress = [r for r in run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
              if r.inputs["securityGroupId"] == build_sg.id]
    assert sorted(r.inputs["fromPort"] for r in egress) == [80.0, 443.0]


def test_buildspec_adds_the_ca_bundle_builds_amd64_and_pushes_only_the_pinned_tag():
    spec = yaml.safe_load(codebuild_project(run_variant("prod")).inputs["source"]["buildspec"])
    commands = [c for phase in spec["phases"].values() for c in phase["commands"]]
    text = "\n".join(commands)
    assert "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in text
    assert 'aws s3 cp --only-show-errors "$REDCAP_S3_URI" redcap.zip' in text
    assert 'docker build --platform linux/amd64 --build-arg PORT="$PORT" -t "$REPOSITORY_URI:$IMAGE_TAG" .' in commands
    assert [c for c in commands if c.startswith("docker push")] == ['docker push "$REPOSITORY_URI:$IMAGE_TAG"']
    assert "latest" not in text
    assert "REDCAP_S3_URI" not in buildspec(s3_source=False)


def test_context_goes_to_a_private_kms_encrypted_tls_only_logged_artifacts_bucket():
    run = run_variant("prod")
    bucket = run.named("redcap-artifacts")
    related = {r.type.split(":")[-1]: r for r in run.resources
               if r.name.startswith("redcap-artifacts-") and r.inputs.get("bucket") == bucket.id}
    assert related["BucketPublicAccessBlock"].inputs == {"bucket": bucket.id, "blockPublicAcls": True,
                                                         "blockPublicPolicy": True, "ignorePublicAcls": True,
                                                         "restrictPublicBuckets": True}
    rule = related["BucketServerSideEncryptionConfiguration"].inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms",
                                                          "kmsMasterKeyId": run.outputs["kmsKeyArn"]}
    deny = statements(policy_of(related["BucketPolicy"]))[0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert related["BucketLogging"].inputs["targetBucket"] == run.outputs["logBucketName"]
    # Everything in it is reproduced from the project folder: emptied on destroy, whatever the stage keeps.
    assert bucket.inputs["forceDestroy"] is True
    assert run_variant("dev-apprunner").named("redcap-artifacts").inputs["forceDestroy"] is True
    assert related["BucketVersioning"].inputs["versioningConfiguration"] == {"status": "Enabled"}
    lifecycle = related["BucketLifecycleConfiguration"].inputs["rules"][0]
    assert lifecycle["noncurrentVersionExpiration"] == {"noncurrentDays": 7.0}
    context = run.one("aws:s3/bucketObjectv2:BucketObjectv2", "build-context")
    assert context.inputs["bucket"] == bucket.id
    assert context.inputs["key"] == f"contexts/{run.outputs['imageTag']}.zip"
    source = codebuild_project(run).inputs["source"]
    assert source["type"] == "S3" and source["location"] == f"{bucket.id}/contexts/{run.outputs['imageTag']}.zip"


def test_trigger_zip_is_deterministic_and_named_by_its_content(tmp_path):
    first, digest = image_module.function_zip(ROOT / "functions" / "build_trigger.py", tmp_path / "a")
    second, again = image_module.function_zip(ROOT / "functions" / "build_trigger.py", tmp_path / "b")
    assert first.read_bytes() == second.read_bytes() and digest == again
    assert first.name == f"build_trigger-{digest}.zip"
    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == ["build_trigger.py"]
        assert archive.read("build_trigger.py") == (ROOT / "functions" / "build_trigger.py").read_bytes()
        assert archive.getinfo("build_trigger.py").date_time == image_module.ZIP_EPOCH


def test_signer_profile_names_fit_and_carry_the_stage():
    assert image_module.signing_profile_name("prod-eu", "a1b2c3d4") == "redcap_prod_eu_a1b2c3d4"
    assert len(image_module.signing_profile_name("x" * 40, "a1b2c3d4")) <= 64


def test_trigger_runs_only_code_this_stack_signed_and_one_at_a_time():
    run = run_variant("prod")
    function = run.named("redcap-trigger", "aws:lambda/function:Function")
    assert function.inputs["reservedConcurrentExecutions"] == 1.0
    assert "code" not in function.inputs  # no unsigned inline archive
    code = run.named("redcap-trigger-code")
    artifacts = run.named("redcap-artifacts")
    digest = code.inputs["key"].removeprefix("functions/build_trigger-").removesuffix(".zip")
    assert code.inputs["bucket"] == artifacts.id and len(digest) == 12
    assert run.named("redcap-artifacts-versioning").urn in code.dependencies  # uploaded as a version
    job = run.one("aws:signer/signingJob:SigningJob")
    assert job.inputs["source"] == {"s3": {"bucket": artifacts.id, "key": code.inputs["key"],
                                           "version": code.outputs["versionId"]}}
    assert job.inputs["destination"] == {"s3": {"bucket": artifacts.id, "prefix": "signed/"}}
    assert job.inputs["ignoreSigningJobFailure"] is False
    signed = job.outputs["signedObjects"][0]["s3s"][0]
    assert (function.inputs["s3Bucket"], function.inputs["s3Key"]) == (signed["bucket"], signed["key"])
    profile = run.one("aws:signer/signingProfile:SigningProfile")
    assert profile.inputs["platformId"] == "AWSLambda-SHA384-ECDSA" and job.inputs["profileName"] == profile.inputs["name"]
    suffix = run.named("redcap-signing-suffix", "random:index/randomId:RandomId").outputs["hex"]
    assert profile.inputs["name"] == f"redcap_prod_{suffix}"
    assert profile.inputs["signatureValidityPeriod"] == {"value": 135.0, "type": "MONTHS"}
    config = run.one("aws:lambda/codeSigningConfig:CodeSigningConfig")
    assert config.inputs["allowedPublishers"] == {"signingProfileVersionArns": [profile.outputs["versionArn"]]}
    assert config.inputs["policies"] == {"untrustedArtifactOnDeployment": "Enforce"}
    assert function.inputs["codeSigningConfigArn"] == config.outputs["arn"]


def test_trigger_lambda_is_invoked_once_per_tag_and_waits_for_the_build():
    run = run_variant("prod")
    function = run.named("redcap-trigger", "aws:lambda/function:Function")
    assert function.inputs["handler"] == "build_trigger.handler" and function.inputs["runtime"] == "python3.12"
    assert function.inputs["timeout"] == 900.0
    group = run.one("aws:cloudwatch/logGroup:LogGroup", "trigger-logs")
    assert function.inputs["loggingConfig"]["logGroup"] == group.outputs["name"] == "/aws/lambda/redcap-prod-image-build"
    assert group.inputs["kmsKeyId"] == run.outputs["kmsKeyArn"]
    invocation = run.named("redcap-build-invocation")
    event = json.loads(invocation.inputs["input"])
    assert event["imageTag"] == run.outputs["imageTag"] and event["projectName"] == "redcap-prod-image"
    assert event["repositoryName"] == "redcap-prod"
    assert event["sourceLocation"] == codebuild_project(run).inputs["source"]["location"]
    assert invocation.inputs["lifecycleScope"] == "CREATE_ONLY" and "triggers" not in invocation.inputs
    assert invocation.inputs["functionName"] == function.outputs["name"]
    # The services wait for the build: the image URI is derived from the invocation's result.
    assert invocation.urn in run.one("aws:ecs/taskDefinition:TaskDefinition").dependencies
    dev = run_variant("dev-apprunner")
    assert dev.named("redcap-build-invocation").urn in dev.one("aws:apprunner/service:Service").dependencies


def test_build_and_trigger_policies_are_least_privilege():
    run = run_variant("prod")
    build = {s["Sid"]: s for s in statements(policy_of(run.named("redcap-build-policy")))}
    repo = run.one("aws:ecr/repository:Repository").outputs["arn"]
    assert build["PushImage"]["Resource"] == [repo]
    assert build["RegistryLogin"] == {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"],
                                      "Sid": "RegistryLogin"}
    assert build["ReadRedcapRelease"]["Resource"] == ["arn:aws:s3:::my-redcap-releases/redcap15.0.9.zip"]
    assert build["AttachToBuild"]["Condition"]["ArnEquals"]["ec2:Subnet"] == [
        "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-private-a",
        "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-private-b"]
    trigger = {s["Sid"]: s for s in statements(policy_of(run.named("redcap-trigger-policy")))}
    assert trigger["RunBuilds"]["Resource"] == [codebuild_project(run).outputs["arn"]]
    assert trigger["FindTag"] == {"Effect": "Allow", "Action": ["ecr:DescribeImages"], "Resource": [repo],
                                  "Sid": "FindTag"}


def test_no_iam_policy_of_any_variant_uses_wildcard_actions():
    for variant in ("express", "dev-apprunner", "prod", "apprunner-domain", "apprunner-cname", "ecs-local"):
        for res, document in iam_documents(run_variant(variant)):
            for statement in statements(document):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert not any("*" in a for a in actions), (variant, res.name, statement)


# -- local build --------------------------------------------------------------------------------

def test_local_build_uses_pulumi_docker_for_linux_amd64_and_pushes_the_same_tag_scheme():
    run = run_variant("ecs-local")
    assert run.of_type("aws:codebuild/project:Project") == [] and [
        i for i in run.of_type("aws:lambda/invocation:Invocation") if "build" in i.name] == []
    docker_image = run.one("docker:index/image:Image")
    tag = run.outputs["imageTag"]
    assert tag.startswith("15.0.9-") and docker_image.inputs["imageName"] == f"{run.outputs['ecrRepositoryUrl']}:{tag}"
    build = docker_image.inputs["build"]
    assert build["platform"] == "linux/amd64" and build["args"] == {"PORT": "9090"}
    assert build["context"] == f"build/contexts/{tag}" and build["dockerfile"] == f"build/contexts/{tag}/Dockerfile"
    assert (ROOT / build["context"] / "redcap.zip").is_file()
    registry = docker_image.inputs["registry"]
    assert "4dabf18193072939515e22adb298388d" in registry  # the ECR password stays secret
    assert registry["value"]["server"] == run.outputs["ecrRepositoryUrl"]
    assert run.outputs["imageUri"] == docker_image.inputs["imageName"]


def test_an_interrupted_local_context_assembly_is_repaired_by_the_next_run():
    """A `pulumi up` stopped while the context was being copied must not leave a folder that
    the next run takes for complete (it would build, or fail to build, a partial context
    forever): the context appears under its final name only once it is whole."""
    import shutil

    tag = run_variant("ecs-local").outputs["imageTag"]
    context = ROOT / "build" / "contexts" / tag
    assert (context / "redcap.zip").is_file()
    # What an interruption after the first copied file (Dockerfile sorts first) used to leave.
    for child in list(context.iterdir()):
        if child.name != "Dockerfile":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    run = run_variant_uncached("ecs-local")
    assert run.outputs["imageTag"] == tag
    for name in ("redcap.zip", "redcap-config.sql", "rds-ca-bundle.pem", "languages", "Dockerfile"):
        assert (context / name).exists(), name
    assert not [p for p in context.parent.iterdir() if p.name.startswith(f"{tag}.")]  # no temporary folders left


def test_config_sql_prefers_the_generated_file(tmp_path):
    (tmp_path / "redcap-config.default.sql").write_text("-- default")
    assert image_module.config_sql_path(tmp_path).name == "redcap-config.default.sql"
    (tmp_path / "redcap-config.sql").write_text("-- generated")
    assert image_module.config_sql_path(tmp_path).name == "redcap-config.sql"
