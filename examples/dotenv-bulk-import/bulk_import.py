#!/usr/bin/env python3
"""Import a fleet of .env files with the Python SDK.

    SCAIVAULT_URL=… SCAIVAULT_TOKEN=… python3 bulk_import.py FLEET_DIR [--skip LOG_LEVEL,PORT]

Every FLEET_DIR/<service>/.env.<env> becomes secrets under
environments/<env>/<service>/<variable in lower case>, each holding {"value": …}. Running it
again writes a new version of each secret and changes nothing else. (The CLI's
`scaivault import dotenv --fleet` does the same and skips unchanged values.)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from dotenv import dotenv_values

from scaivault_sdk import ScaiVaultError, SyncScaiVaultClient


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fleet", type=pathlib.Path)
    ap.add_argument("--skip", default="", help="comma-separated non-sensitive variables to leave out")
    args = ap.parse_args()
    skip = {s for s in args.skip.split(",") if s}

    client = SyncScaiVaultClient(base_url=os.environ["SCAIVAULT_URL"], token=os.environ["SCAIVAULT_TOKEN"])
    written = 0
    for env_file in sorted(args.fleet.glob("*/.env.*")):
        service = env_file.parent.name.lower()
        env = env_file.name.removeprefix(".env.").lower()
        for name, value in dotenv_values(env_file).items():
            if name in skip or value is None:
                continue
            path = f"environments/{env}/{service}/{name.lower()}"
            try:
                client.secrets.write(
                    path=path,
                    data={"value": value},
                    secret_type="kv",
                    metadata={"tags": [service, env, "imported"], "source": env_file.name},
                )
            except ScaiVaultError as e:
                print(f"{path}: {e.code}: {e.message}", file=sys.stderr)
                return 1
            written += 1
    print(f"wrote {written} secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
