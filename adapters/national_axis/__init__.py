"""The national document axis (VDXP): its client, the upstream sender, the downstream
receiver, the directory sync, and a simulator of the axis for tests and demos."""
