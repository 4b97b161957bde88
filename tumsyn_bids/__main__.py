"""``python -m tumsyn_bids`` runs the BIDS-App entry point."""

from tumsyn_bids.cli.main import main

if __name__ == "__main__":
    main()
