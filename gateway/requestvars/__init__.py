"""Request variables: the one vocabulary of names a config may use to read a request
(APISIX's names, nginx's meanings), the one ``$var`` template renderer and the one ``vars``
expression engine. Everything is resolved when the config loads; a request pays only for the
variables its plugins name.

This package imports nothing else of the gateway, so the config loader (which checks variable
names, e.g. chash keys) and the plugins share it. See ``table`` for the variables, ``template``
and ``expression`` for the two languages built on them.
"""
from gateway.requestvars.expression import Predicate, compile_vars
from gateway.requestvars.table import (
    Getter,
    RequestView,
    is_variable,
    register_var,
    to_text,
    unregister_var,
    var_getter,
    variable_names,
)
from gateway.requestvars.template import Template, compile_template

__all__ = [
    "Getter",
    "Predicate",
    "RequestView",
    "Template",
    "compile_template",
    "compile_vars",
    "is_variable",
    "register_var",
    "to_text",
    "unregister_var",
    "var_getter",
    "variable_names",
]
