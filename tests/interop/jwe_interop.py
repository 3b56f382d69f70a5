#!/usr/bin/env python3
"""Interoperability check of tokenvault sealed tokens with an independent JOSE
library, jwcrypto (pip install jwcrypto==1.6.1).

    jwe_interop.py open PRIVATE_KEY_PEM ACCOUNT PROVIDER < token > plaintext
    jwe_interop.py seal PUBLIC_KEY_PEM ACCOUNT PROVIDER < plaintext > token

`open` decrypts a JWE compact serialization and checks its protected header:
exactly alg RSA-OAEP-256, enc A256GCM, kid (the key's RFC 7638 SHA-256
thumbprint), account and provider, in that order. `seal` produces a JWE with
those header members. Errors go to stderr with a non-zero exit status.
"""

import json
import sys

from jwcrypto import jwe, jwk
from jwcrypto.common import json_encode


def load_key(path):
    with open(path, "rb") as f:
        return jwk.JWK.from_pem(f.read())


def expected_header(key, account, provider):
    return {
        "alg": "RSA-OAEP-256",
        "enc": "A256GCM",
        "kid": key.thumbprint(),
        "account": account,
        "provider": provider,
    }


def cmd_open(key_path, account, provider):
    key = load_key(key_path)
    token = sys.stdin.read().strip()
    obj = jwe.JWE()
    obj.deserialize(token, key=key)
    header = json.loads(obj.objects["protected"])
    expected = expected_header(key, account, provider)
    if header != expected or list(header) != list(expected):
        sys.exit(f"unexpected protected header: {header!r}, expected {expected!r}")
    sys.stdout.buffer.write(obj.payload)


def cmd_seal(key_path, account, provider):
    key = load_key(key_path)
    plaintext = sys.stdin.buffer.read()
    protected = json_encode(expected_header(key, account, provider))
    obj = jwe.JWE(plaintext, protected=protected)
    obj.add_recipient(key)
    sys.stdout.write(obj.serialize(compact=True))


def main(argv):
    commands = {"open": cmd_open, "seal": cmd_seal}
    if len(argv) != 5 or argv[1] not in commands:
        sys.exit(__doc__)
    commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
