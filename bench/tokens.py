"""Users and tokens for the token-authenticated targets: ``python -m bench.tokens --count N
--out PATH``, run with the target's environment (settings, ``BENCH_DB``) before its server
starts. Migrates the throw-away database, creates N users (one per client: every connect
verifies a token whose user no process has seen, the cost of a fresh connect), and writes
their tokens as a JSON list."""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    import realtime

    call_command("migrate", verbosity=0)
    model = get_user_model()
    model.objects.bulk_create(
        [model(username=f"bench{i}", password="!") for i in range(args.count)], batch_size=1000
    )
    users = model.objects.filter(username__startswith="bench").order_by("pk")
    tokens = [realtime.make_token(user, expires_in=3600) for user in users]
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(tokens, out)
    print(json.dumps({"event": "tokens", "count": len(tokens)}), flush=True)


if __name__ == "__main__":
    main()
