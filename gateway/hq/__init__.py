"""HQ's side of the contract: tools that read what stores send (``storegw hq watch``)."""
