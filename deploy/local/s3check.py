"""Create the media bucket and prove the S3 server checks signatures.

Usage: s3check.py ENDPOINT_URL ACCESS_KEY SECRET_KEY BUCKET REGION

Run by deploy/local/lib.sh start_s3 with the project venv's Python (boto3
is installed there). Exits non-zero, saying why, if the bucket cannot be
made with the right keys, or if an unsigned or wrongly signed request is
accepted: the services must not pass their tests against an S3 that would
take anything.
"""

import sys
import time
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError


def client(endpoint, ak, sk, region):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
        region_name=region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=5,
            read_timeout=10,
        ),
    )


def ensure_bucket(s3, bucket, deadline):
    # The S3 port can answer before the filer behind it is ready: retry.
    last = None
    while time.time() < deadline:
        try:
            try:
                s3.head_bucket(Bucket=bucket)
                return "exists"
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            s3.create_bucket(Bucket=bucket)
            return "created"
        except (ClientError, EndpointConnectionError) as e:
            last = e
            time.sleep(0.5)
    raise SystemExit(f"s3check: bucket {bucket} not available: {last}")


def main():
    endpoint, ak, sk, bucket, region = sys.argv[1:6]
    s3 = client(endpoint, ak, sk, region)
    print(f"s3check: bucket {bucket} {ensure_bucket(s3, bucket, time.time() + 30)}")

    probe = f"{endpoint}/{bucket}/.aiim-unsigned-probe"
    req = urllib.request.Request(probe, data=b"x", method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raise SystemExit(f"s3check: UNSIGNED PUT accepted (HTTP {r.status}): signature checking is off")
    except urllib.error.HTTPError as e:
        if e.code != 403:
            raise SystemExit(f"s3check: unsigned PUT gave HTTP {e.code}, expected 403")
    print("s3check: unsigned PUT refused (403)")

    wrong = client(endpoint, ak, "wrong" + sk, region)
    try:
        wrong.put_object(Bucket=bucket, Key=".aiim-wrong-key-probe", Body=b"x")
        raise SystemExit("s3check: PUT signed with a WRONG secret was accepted")
    except ClientError as e:
        print(f"s3check: wrong-secret PUT refused ({e.response['Error']['Code']})")

    s3.put_object(Bucket=bucket, Key=".aiim-probe", Body=b"ok")
    body = s3.get_object(Bucket=bucket, Key=".aiim-probe")["Body"].read()
    s3.delete_object(Bucket=bucket, Key=".aiim-probe")
    if body != b"ok":
        raise SystemExit(f"s3check: read back {body!r}")
    print("s3check: signed put/get/delete ok")


if __name__ == "__main__":
    main()
