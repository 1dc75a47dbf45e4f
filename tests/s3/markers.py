"""Creates directory markers (empty objects KEY/) for the keys given on the command line
in bucket argv[1], with S3_KEY's credentials (tests/s3.rs, for rclone versions that do
not write markers themselves)."""

import sys

from s3common import client

s3 = client()
for key in sys.argv[2:]:
    assert key.endswith("/"), key
    s3.put_object(Bucket=sys.argv[1], Key=key, Body=b"")
    print("marker", key)
