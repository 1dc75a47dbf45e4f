"""What the S3 scripts share (tests/s3/*.py and benches/s3_bench.py): the endpoint and CA
from the environment (S3_ENDPOINT, S3_CA_BUNDLE), boto3 clients, the AWS CLI's command
line and environment, and the checks' helpers."""

import hashlib
import os
import ssl

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

EP = os.environ["S3_ENDPOINT"]
CA = os.environ.get("S3_CA_BUNDLE") or None
# For URLs fetched without boto3 (presigned URLs, raw requests).
TLS = ssl.create_default_context(cafile=CA) if CA else None


def client(key=None, secret=None, s3=None, **config):
    """A boto3 S3 client for the gateway (path-style, no retries); the readwrite key of
    S3_KEY/S3_SECRET unless another is given."""
    s3 = {"addressing_style": "path", **(s3 or {})}
    return boto3.client(
        "s3",
        endpoint_url=EP,
        aws_access_key_id=key or os.environ["S3_KEY"],
        aws_secret_access_key=secret or os.environ["S3_SECRET"],
        region_name="us-east-1",
        verify=CA,
        config=Config(s3=s3, retries={"max_attempts": 1}, **config),
    )


def aws_cli():
    """The `aws ... s3` command prefix and its environment (S3_KEY's credentials)."""
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=os.environ["S3_KEY"],
        AWS_SECRET_ACCESS_KEY=os.environ["S3_SECRET"],
        AWS_DEFAULT_REGION="us-east-1",
    )
    if CA:
        env["AWS_CA_BUNDLE"] = CA
    return ["aws", "--endpoint-url", EP, "s3"], env


def sha(b):
    return hashlib.sha256(b).hexdigest()


def expect_error(code, status, fn, *args, **kw):
    """Calls fn and checks it fails with the S3 error `code` and HTTP `status`."""
    try:
        fn(*args, **kw)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        got_status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert (got, got_status) == (code, status), f"expected {code}/{status}, got {got}/{got_status}: {e}"
        return
    raise AssertionError(f"expected {code}/{status}, the call succeeded")


def check(name):
    print("ok:", name, flush=True)
