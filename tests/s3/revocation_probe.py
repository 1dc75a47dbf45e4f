"""Signs S3 requests with one key (run by tests/s3.rs while it revokes that key).

Environment: S3_ENDPOINT, S3_KEY, S3_SECRET, S3_CA_BUNDLE (the cluster CA, for HTTPS), and
MODE: "once" lists the buckets once and prints "ok"; "until-refused" lists them every
100 ms until the gateway refuses, then prints "refused CODE STATUS MESSAGE" (for 30 s at
most, then fails).
"""

import os
import time

from botocore.exceptions import ClientError

from s3common import client

s3 = client()

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
