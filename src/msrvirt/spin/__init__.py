"""SPIN as msrvirt's second engine: run spin, a C compiler and pan on the generated Promela model.

Running external programs is OS work, so it lives here, beside live/ and apart from the
model layers: `msrvirt.check.promela` writes the model and reads pan's answers (pure),
this package only runs the tools in a private temporary directory.
"""
