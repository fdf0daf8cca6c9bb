"""The only package that touches the OS: /dev/kvm through ctypes and ioctls."""
