"""Golden model of the int8 training accelerator."""
