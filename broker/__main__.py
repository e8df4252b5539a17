"""`python -m broker` is the `docbroker` command."""

from broker.cli import main

if __name__ == "__main__":
    main()
