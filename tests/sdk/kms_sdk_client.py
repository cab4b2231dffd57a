"""Drives `datakey kms serve` with the official Tencent Cloud KMS Python SDK.

Run by scripts/sdk-test.sh, which starts the server and sets DATAKEY_SERVE_HOST,
TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY. Prints one line per check and a final
"checks: passed=N failed=M" (the script adds its own checks and prints the summary); exits 1
when any check failed.
"""

import base64
import os
import sys
import traceback

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import kms_client, models

HOST = os.environ["DATAKEY_SERVE_HOST"]
SECRET_ID = os.environ["TENCENTCLOUD_SECRET_ID"]
SECRET_KEY = os.environ["TENCENTCLOUD_SECRET_KEY"]
REGION = "ap-guangzhou"
CONTEXT = '{"team":"sdk","purpose":"test"}'


def client(sign_method="TC3-HMAC-SHA256", secret_key=SECRET_KEY, method="POST"):
    http = HttpProfile(protocol="http", endpoint=HOST, reqMethod=method, reqTimeout=10)
    profile = ClientProfile(httpProfile=http, signMethod=sign_method)
    return kms_client.KmsClient(credential.Credential(SECRET_ID, secret_key), REGION, profile)


def request(model, **fields):
    req = model()
    for name, value in fields.items():
        setattr(req, name, value)
    return req


def expect_error(code, call):
    try:
        call()
    except TencentCloudSDKException as err:
        if err.get_code() != code:
            raise AssertionError(f"expected {code}, got {err.get_code()}: {err.get_message()}")
        return
    raise AssertionError(f"expected {code}, but the call succeeded")


class State:
    key_id = None


def check_create_key(kms):
    made = kms.CreateKey(request(models.CreateKeyRequest, Alias="sdk-test", Description="sdk"))
    assert made.KeyId and made.Alias == "sdk-test", made.to_json_string()
    assert made.KeyState == "Enabled", made.KeyState
    State.key_id = made.KeyId


def check_generate_then_decrypt(kms):
    made = kms.GenerateDataKey(
        request(
            models.GenerateDataKeyRequest,
            KeyId=State.key_id,
            KeySpec="AES_256",
            EncryptionContext=CONTEXT,
        )
    )
    assert made.KeyId == State.key_id
    assert len(base64.b64decode(made.Plaintext)) == 32
    opened = kms.Decrypt(
        request(
            models.DecryptRequest,
            CiphertextBlob=made.CiphertextBlob,
            EncryptionContext=CONTEXT,
        )
    )
    assert opened.Plaintext == made.Plaintext
    assert opened.KeyId == State.key_id
    expect_error(
        "InvalidParameterValue.InvalidCiphertext",
        lambda: kms.Decrypt(
            request(
                models.DecryptRequest,
                CiphertextBlob=made.CiphertextBlob,
                EncryptionContext='{"team":"other"}',
            )
        ),
    )


def check_number_of_bytes(kms):
    made = kms.GenerateDataKey(
        request(models.GenerateDataKeyRequest, KeyId=State.key_id, NumberOfBytes=1024)
    )
    assert len(base64.b64decode(made.Plaintext)) == 1024
    expect_error(
        "InvalidParameterValue",
        lambda: kms.GenerateDataKey(
            request(models.GenerateDataKeyRequest, KeyId=State.key_id, NumberOfBytes=1025)
        ),
    )


def check_encrypt_decrypt_re_encrypt(kms):
    secret = base64.b64encode(b"a small secret").decode()
    sealed = kms.Encrypt(
        request(models.EncryptRequest, KeyId=State.key_id, Plaintext=secret)
    )
    moved = kms.ReEncrypt(
        request(
            models.ReEncryptRequest,
            CiphertextBlob=sealed.CiphertextBlob,
            DestinationKeyId="alias/default",
            DestinationEncryptionContext=CONTEXT,
        )
    )
    assert moved.SourceKeyId == State.key_id and moved.ReEncrypted
    opened = kms.Decrypt(
        request(
            models.DecryptRequest,
            CiphertextBlob=moved.CiphertextBlob,
            EncryptionContext=CONTEXT,
        )
    )
    assert opened.Plaintext == secret


def check_describe_and_list(kms):
    described = kms.DescribeKey(request(models.DescribeKeyRequest, KeyId=State.key_id))
    assert described.KeyMetadata.Alias == "sdk-test"
    assert described.KeyMetadata.KeyUsage == "ENCRYPT_DECRYPT"
    listed = kms.ListKeys(request(models.ListKeysRequest, Limit=100))
    assert State.key_id in [key.KeyId for key in listed.Keys]
    assert listed.TotalCount == len(listed.Keys)


def check_disabled_key(kms):
    kms.DisableKey(request(models.DisableKeyRequest, KeyId=State.key_id))
    generate = lambda: kms.GenerateDataKey(
        request(models.GenerateDataKeyRequest, KeyId=State.key_id, KeySpec="AES_128")
    )
    expect_error("ResourceUnavailable.CmkDisabled", generate)
    kms.EnableKey(request(models.EnableKeyRequest, KeyId=State.key_id))
    assert len(base64.b64decode(generate().Plaintext)) == 16


def check_unknown_key(kms):
    expect_error(
        "ResourceUnavailable.CmkNotFound",
        lambda: kms.GenerateDataKey(
            request(
                models.GenerateDataKeyRequest,
                KeyId="00000000-0000-0000-0000-000000000000",
                KeySpec="AES_256",
            )
        ),
    )


def check_hmac_sha256_form_signature(_kms):
    made = client(sign_method="HmacSHA256").GenerateDataKey(
        request(models.GenerateDataKeyRequest, KeyId=State.key_id, KeySpec="AES_256")
    )
    assert len(base64.b64decode(made.Plaintext)) == 32


def check_tc3_over_get(_kms):
    over_get = client(method="GET")
    made = over_get.GenerateDataKey(
        request(
            models.GenerateDataKeyRequest,
            KeyId=State.key_id,
            KeySpec="AES_256",
            EncryptionContext=CONTEXT,
        )
    )
    opened = over_get.Decrypt(
        request(
            models.DecryptRequest,
            CiphertextBlob=made.CiphertextBlob,
            EncryptionContext=CONTEXT,
        )
    )
    assert opened.Plaintext == made.Plaintext
    listed = over_get.ListKeys(request(models.ListKeysRequest))
    assert State.key_id in [key.KeyId for key in listed.Keys]
    wrong = client(secret_key="not-the-secret-key", method="GET")
    expect_error(
        "AuthFailure.SignatureFailure",
        lambda: wrong.ListKeys(request(models.ListKeysRequest)),
    )


def check_wrong_secret_key(_kms):
    wrong = client(secret_key="not-the-secret-key")
    expect_error(
        "AuthFailure.SignatureFailure",
        lambda: wrong.ListKeys(request(models.ListKeysRequest)),
    )


CHECKS = [
    check_create_key,
    check_generate_then_decrypt,
    check_number_of_bytes,
    check_encrypt_decrypt_re_encrypt,
    check_describe_and_list,
    check_disabled_key,
    check_unknown_key,
    check_hmac_sha256_form_signature,
    check_tc3_over_get,
    check_wrong_secret_key,
]


def main():
    kms = client()
    passed = failed = 0
    for check in CHECKS:
        name = check.__name__.removeprefix("check_")
        try:
            check(kms)
        except Exception:  # report every failure and go on with the next check
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc(limit=3)
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"checks: passed={passed} failed={failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
