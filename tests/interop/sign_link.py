#!/usr/bin/env python3
"""Makes a tokenvault signed connect (or disconnect) link, as an application's
backend would: the reference implementation of docs/CONNECT_LINKS.md in
Python's standard library only. The end-to-end tests connect an account
through a link made by this script.

    sign_link.py --secret-file link-secret --base-url https://connect.example.com \
                 [--tenant acme] --account user-42 [--provider google] [--ttl 600] \
                 [--disconnect] [--metadata '{"display_name": "Ada", "tags": ["beta"]}']
"""

import argparse
import base64
import hashlib
import hmac
import json
import time
import urllib.parse


def sign_link(secret: bytes, base_url: str, account: str, provider: str | None = None,
              ttl: int = 600, action: str = "connect", now: float | None = None,
              tenant: str | None = None, metadata: dict | None = None) -> str:
    expires = int((time.time() if now is None else now) + ttl)
    # With a tenant, the account id (and what is signed) is "<tenant>:<account>".
    account_id = f"{tenant}:{account}" if tenant else account
    message = f"tokenvault-link-v1\n{action}\n{account_id}\n{provider or ''}\n{expires}"
    meta = None
    if metadata is not None:
        # Version 2 signs the metadata exactly as the link carries it.
        meta = json.dumps(metadata, separators=(",", ":"))
        message = message.replace("tokenvault-link-v1", "tokenvault-link-v2", 1) + "\n" + meta
    message = message.encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    sig = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    params = {"tenant": tenant} if tenant else {}
    params["account"] = account
    if provider:
        params["provider"] = provider
    params["expires"] = str(expires)
    if meta is not None:
        params["metadata"] = meta
    params["sig"] = sig
    if action == "disconnect":
        path = "disconnect"
    elif provider:
        path = f"connect/{provider}"
    else:
        path = ""
    return f"{base_url.rstrip('/')}/{path}?{urllib.parse.urlencode(params)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--tenant")
    parser.add_argument("--account", required=True)
    parser.add_argument("--provider")
    parser.add_argument("--ttl", type=int, default=600)
    parser.add_argument("--disconnect", action="store_true")
    parser.add_argument("--metadata", help="a JSON object of strings or lists of strings")
    args = parser.parse_args()
    with open(args.secret_file, "rb") as f:
        secret = f.read().strip()
    print(sign_link(secret, args.base_url, args.account, args.provider, args.ttl,
                    "disconnect" if args.disconnect else "connect", tenant=args.tenant,
                    metadata=json.loads(args.metadata) if args.metadata else None))


if __name__ == "__main__":
    main()
