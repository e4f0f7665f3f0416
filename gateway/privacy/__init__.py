"""Privacy by default: keys and field encryption, the audit chain, the data inventory, retention.

Above the store and the config, below the spine and the domains (docs/architecture.md, "Floors").
"""
