"""The AWS architecture: one module per concern, composed by :mod:`squall.aws.cluster`."""
