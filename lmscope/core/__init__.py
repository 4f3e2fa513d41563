"""The core library: loading, one traced forward pass, head analysis. Imports no UI."""
