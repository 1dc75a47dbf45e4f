"""Signs S3 requests with one key (run by tests/s3.rs while it revokes that key).

Environment: S3_ENDPOINT, S3_KEY, S3_SECRET, S3_CA_BUNDLE (the cluster CA, for HTTPS), and
MODE: "once" lists the buckets once and prints "ok"; "until-refused" lists them every
100 ms until the gateway refuses, then prints "refused CODE STATUS MESSAGE" (for 30 s at
most, then fails).
"""

import os
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT"],
    aws_access_key_id=os.environ["S3_KEY"],
    aws_secret_access_key=os.environ["S3_SECRET"],
    region_name="us-east-1",
    verify=os.environ.get("S3_CA_BUNDLE") or None,
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)

if os.environ["MODE"] == "once":
    s3.list_buckets()
    print("ok")
else:
    deadline = time.time() + 30
    while True:
        try:
            s3.list_buckets()
        except ClientError as e:
            err = e.response["Error"]
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            print("refused", err["Code"], status, err.get("Message", ""))
            break
        assert time.time() < deadline, "still accepted after 30 s"
        time.sleep(0.1)
