"""Entries for a users file (``neuralpipe serve --users-file``), printed as YAML.

    python -m neuralpipe.security hash-password NAME      # asks for the password (twice), prints the user entry
    python -m neuralpipe.security new-api-key NAME        # prints a new key once, and the entry that stores its hash
"""

from __future__ import annotations

import getpass
import sys

from neuralpipe.security.passwords import hash_password, new_api_key


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("hash-password", "new-api-key"):
        print(__doc__, file=sys.stderr)
        return 2
    command, name = argv
    if command == "hash-password":
        password = getpass.getpass(f"password for {name}: ")
        if not password or password != getpass.getpass("again: "):
            print("the passwords are empty or differ", file=sys.stderr)
            return 2
        print(f'users:\n  {name}:\n    hash: "{hash_password(password)}"\n    backend_roles: []')
        return 0
    key, stored = new_api_key()
    print(f"# the key (shown once; clients send 'Authorization: ApiKey <key>'): {key}", file=sys.stderr)
    print(f'api_keys:\n  {name}:\n    hash: "{stored}"\n    backend_roles: []')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
