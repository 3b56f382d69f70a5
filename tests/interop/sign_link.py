#!/usr/bin/env python3
"""Makes a tokenvault signed connect (or disconnect) link, as an application's
backend would: the reference implementation of docs/CONNECT_LINKS.md in
Python's standard library only. The end-to-end tests connect an account
through a link made by this script.

    sign_link.py --secret-file link-secret --base-url https://connect.example.com \
                 [--tenant acme] --account user-42 [--provider google] [--ttl 600] \
                 [--disconnect]
"""

import argparse
import base64
import hashlib
import hmac
import time
import urllib.parse


def sign_link(secret: bytes, base_url: str, account: str, provider: str | None = None,
              ttl: int = 600, action: str = "connect", now: float | None = None,
              tenant: str | None = None) -> str:
    expires = int((time.time() if now is None else now) + ttl)
    # With a tenant, the account id (and what is signed) is "<tenant>:<account>".
    account_id = f"{tenant}:{account}" if tenant else account
    message = f"tokenvault-link-v1\n{action}\n{account_id}\n{provider or ''}\n{expires}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    sig = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    params = {"tenant": tenant} if tenant else {}
    params["account"] = account
    if provider:
        params["provider"] = provider
    params["expires"] = str(expires)
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
    args = parser.parse_args()
    with open(args.secret_file, "rb") as f:
        secret = f.read().strip()
    print(sign_link(secret, args.base_url, args.account, args.provider, args.ttl,
                    "disconnect" if args.disconnect else "connect", tenant=args.tenant))


if __name__ == "__main__":
    main()
