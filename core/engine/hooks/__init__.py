"""Training hooks shared by every domain, registered under the scope ``interlace``.

One module per hook; importing this package registers all of them in ``HOOKS``.
"""
