"""stasis-rcml: an Asterisk ARI Stasis application that runs RCML voice apps."""

__version__ = "0.1.0"
