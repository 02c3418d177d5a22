"""kubelite.selectors: label and field selector syntax and matching."""

import pytest

from tools.kubelite.selectors import (
    SelectorError,
    check_field_selector,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "front", "jiriaf.alivetime": "120", "empty": ""}

LABEL_CASES = [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=db", False),
    ("app!=db", True),
    ("app!=web", False),
    ("missing!=x", True),
    ("app in (web,db)", True),
    ("app in (db)", False),
    ("app notin (db,cache)", True),
    ("app notin (web)", False),
    ("missing notin (x)", True),
    ("missing in (x)", False),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
    ("app=web, tier in (front, back) , !missing", True),
    ("jiriaf.alivetime>100", True),
    ("jiriaf.alivetime>120", False),
    ("jiriaf.alivetime<121", True),
    ("app>1", False),                    # non-integer label never matches Gt
    ("empty=", True),
    ("empty=,app=web", True),
    ("app=", False),
    ("example.com/key!=v", True),
    ("app in (web,)", True),
]


@pytest.mark.parametrize("text,want", LABEL_CASES)
def test_label_selector_matches(text, want):
    assert parse_label_selector(text).matches(LABELS) is want


@pytest.mark.parametrize("text", [
    "app=web=x", "app in web", "app in (web", "in (a)", "app notin ()", "app in ()",
    ",app", "app,", "app=web,,tier=x", "!", "app === x", "a b", "app=(x)",
    "-bad=x", "app=-bad-", "a/b/c=x", "UPPER.Com/x=y", "app>x", "app<", "x" * 64,
    "app=" + "v" * 64,
])
def test_label_selector_syntax_errors(text):
    with pytest.raises(SelectorError):
        parse_label_selector(text)


def test_label_selector_round_trips_through_str():
    sel = parse_label_selector("tier in (b,a), app=web, !gone, x, y notin (z), n>3")
    again = parse_label_selector(str(sel))
    assert again == sel
    assert str(sel) == "app=web,!gone,n>3,tier in (a,b),x,y notin (z)"


def test_empty_selector_is_everything():
    assert parse_label_selector("").empty()
    assert parse_label_selector(None).matches({})
    assert not parse_label_selector("a").empty()


DICT_CASES = [
    ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
    ({"matchLabels": {"a": "1"},
      "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"}, False),
]


@pytest.mark.parametrize("sel,labels,want", DICT_CASES)
def test_label_selector_from_dict(sel, labels, want):
    assert label_selector_from_dict(sel).matches(labels) is want


def test_nil_selector_matches_nothing():
    assert not label_selector_from_dict(None).matches({})


def test_dict_selector_string_form_is_parseable():
    sel = label_selector_from_dict({"matchLabels": {"app": "x"},
                                    "matchExpressions": [{"key": "t", "operator": "In", "values": ["a"]}]})
    assert str(sel) == "app=x,t in (a)"
    assert parse_label_selector(str(sel)) == sel


@pytest.mark.parametrize("sel", [
    {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
    {"matchExpressions": [{"key": "a", "operator": "In"}]},
    {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
    {"matchLabels": {"bad key": "x"}},
])
def test_label_selector_from_dict_errors(sel):
    with pytest.raises(SelectorError):
        label_selector_from_dict(sel)


POD = {
    "metadata": {"name": "p1", "namespace": "ns1"},
    "spec": {"nodeName": "n1", "restartPolicy": "Never"},
    "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]},
}
UNBOUND = {"metadata": {"name": "p2", "namespace": "ns1"}, "spec": {}, "status": {"phase": "Pending"}}
EVENT = {"metadata": {"name": "e"}, "involvedObject": {"name": "p1", "kind": "Pod"},
         "type": "Warning", "source": {"component": "default-scheduler"}}
NODE = {"metadata": {"name": "n"}, "spec": {}}

FIELD_CASES = [
    ("", POD, True),
    ("metadata.name=p1", POD, True),
    ("metadata.name==p1", POD, True),
    ("metadata.name!=p1", POD, False),
    ("metadata.namespace=ns1,spec.nodeName=n1", POD, True),
    ("spec.nodeName=", POD, False),
    ("spec.nodeName=", UNBOUND, True),
    ("spec.nodeName!=", POD, True),
    ("spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed", UNBOUND, True),
    ("status.phase=Running", POD, True),
    ("status.podIP=", POD, True),
    ("status.podIPs=10.0.0.1", POD, True),
    ("involvedObject.name=p1,type=Warning", EVENT, True),
    ("source=default-scheduler", EVENT, True),
    ("spec.unschedulable=false", NODE, True),
    ("spec.unschedulable=true", NODE, False),
    ("spec.unschedulable=true", {"spec": {"unschedulable": True}}, True),
    (r"metadata.name=a\,b", {"metadata": {"name": "a,b"}}, True),
    (r"metadata.name=a\=b", {"metadata": {"name": "a=b"}}, True),
]


@pytest.mark.parametrize("text,obj,want", FIELD_CASES)
def test_field_selector_matches(text, obj, want):
    assert parse_field_selector(text).matches(obj) is want


@pytest.mark.parametrize("text", ["metadata.name", "=x", "a=b,", ",a=b", r"a=b\x", "a=b=c"])
def test_field_selector_syntax_errors(text):
    with pytest.raises(SelectorError):
        parse_field_selector(text)


def test_field_selector_requires_and_str():
    sel = parse_field_selector("spec.nodeName=n1,status.phase!=Failed")
    assert sel.requires("spec.nodeName") == "n1"
    assert sel.requires("status.phase") is None
    assert str(parse_field_selector(r"metadata.name=a\,b")) == r"metadata.name=a\,b"
    assert parse_field_selector("").empty()


def test_check_field_selector():
    check_field_selector(parse_field_selector("spec.nodeName=,metadata.name=x"), "pods")
    check_field_selector(parse_field_selector("involvedObject.name=x"), "events")
    with pytest.raises(SelectorError, match="field label not supported: spec.nodeName"):
        check_field_selector(parse_field_selector("spec.nodeName=x"), "configmaps")
    with pytest.raises(SelectorError):
        check_field_selector(parse_field_selector("spec.foo=x"), "pods")
