"""The example app: configured by ../dbos_config.yaml, run from the repository root.

    python examples/quickstart.py
"""

from dbos import DBOS


def main() -> None:
    DBOS()  # reads dbos_config.yaml from the working directory
    DBOS.launch()
    version = DBOS.get_latest_application_version()
    print(f"DBOS launched: application version {version.version_name}")
    print(f"System database: {DBOS.config and DBOS.config.get('name')} ready")
    DBOS.destroy()


if __name__ == "__main__":
    main()
