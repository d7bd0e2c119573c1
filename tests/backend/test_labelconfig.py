"""Label config parsing: single, multiple, aliases, missing parts, malicious XML."""
import pytest

from backend.labelconfig import LabelConfig, LabelConfigError, parse_label_config
from tests.backend.conftest import MULTI_CONFIG, SINGLE_CONFIG


def test_single_label():
    cfg = parse_label_config(SINGLE_CONFIG)
    assert cfg == LabelConfig("sentiment", "text", "text", ("pos", "neg"), False)
    assert LabelConfig.from_dict(cfg.to_dict()) == cfg


def test_multi_label_and_field_name():
    cfg = parse_label_config(MULTI_CONFIG)
    assert (cfg.from_name, cfg.to_name, cfg.text_field) == ("topics", "body", "content")
    assert cfg.labels == ("a", "b", "c") and cfg.multi_label


def test_alias_nested_choices_and_other_controls():
    xml = """<View><Header value="x"/><Text name="t" value="$msg"/>
      <TextArea name="note" toName="t"/>
      <Choices name="c" toName="t"><View><Choice value="Long name" alias="L"/></View>
      <Choice value="S"/></Choices></View>"""
    cfg = parse_label_config(xml)
    assert cfg.labels == ("L", "S") and cfg.text_field == "msg" and not cfg.multi_label


def test_result_shape():
    cfg = parse_label_config(SINGLE_CONFIG)
    assert cfg.result(["neg"], 0.75) == [{"from_name": "sentiment", "to_name": "text",
                                          "type": "choices", "value": {"choices": ["neg"]},
                                          "score": 0.75}]
    assert cfg.result([]) == []


def test_second_choices_used_when_first_does_not_target_text():
    xml = """<View><Text name="t" value="$text"/><Image name="img" value="$image"/>
      <Choices name="img_c" toName="img"><Choice value="x"/></Choices>
      <Choices name="txt_c" toName="t"><Choice value="y"/></Choices></View>"""
    assert parse_label_config(xml).from_name == "txt_c"


@pytest.mark.parametrize("xml,message", [
    ("", "empty"),
    ("<View><Text name='t' value='$t'/></View>", "no <Choices>"),
    ("<View><Choices name='c' toName='t'><Choice value='a'/></Choices></View>", "no <Text"),
    ("<View><Text name='t' value='$t'/><Choices name='c' toName='x'><Choice value='a'/>"
     "</Choices></View>", "toName='x'"),
    ("<View><Text name='t' value='$t'/><Choices name='c' toName='t'></Choices></View>",
     "no <Choice"),
    ("<View><Text name='t' value='plain'/><Choices name='c' toName='t'><Choice value='a'/>"
     "</Choices></View>", "expected \"$field\""),
    ("<View><Text name='t' value='$t'/><Choices name='c' toName='t'><Choice value='a'/>"
     "<Choice value='a'/></Choices></View>", "duplicate choice"),
    ("<View><Text name='t' value='$t'/><Choices name='c' toName='t'><Choice/></Choices></View>",
     "has no value"),
    ("<View><Text name='t'", "not well-formed"),
])
def test_errors(xml, message):
    with pytest.raises(LabelConfigError, match=None) as err:
        parse_label_config(xml)
    assert message in str(err.value)


@pytest.mark.parametrize("xml", [
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
    '<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="&lol2;"/>'
    '</Choices></View>',
    '<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><View>&xxe;</View>',
    '<!doctype View><View/>',
])
def test_doctype_and_entities_rejected(xml):
    with pytest.raises(LabelConfigError, match="DOCTYPE or entity"):
        parse_label_config(xml)


def test_size_bound():
    with pytest.raises(LabelConfigError, match="larger than"):
        parse_label_config("<View>" + " " * 1_000_001 + "</View>")


def test_not_a_string():
    with pytest.raises(LabelConfigError):
        parse_label_config(None)
