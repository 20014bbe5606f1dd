"""The test suite; its folders mirror the package (lm/, vae/, workflow/, sources/)."""
