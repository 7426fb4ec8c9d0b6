"""dxlmisp_devstack.misp.galaxies: clusters from galaxy tags, as MISP shows them."""
from __future__ import annotations

from dxlmisp_devstack.misp.galaxies import galaxies


def test_galaxy_tags_become_clusters_grouped_by_type() -> None:
    """Two ATT&CK tags and a threat actor give two galaxies; other tags none; ATT&CK ids land in meta."""
    tags = [{"id": "1", "name": 'misp-galaxy:mitre-attack-pattern="Masquerading - T1036"'},
            {"id": "2", "name": 'misp-galaxy:mitre-attack-pattern="Phishing - T1566.001"'},
            {"id": "3", "name": 'misp-galaxy:threat-actor="Sofacy"'}, {"id": "4", "name": "tlp:amber"}]
    found = galaxies(tags)
    assert [(g["type"], [c["value"] for c in g["GalaxyCluster"]]) for g in found] == [
        ("mitre-attack-pattern", ["Masquerading - T1036", "Phishing - T1566.001"]), ("threat-actor", ["Sofacy"])]
    assert [c["meta"] for c in found[0]["GalaxyCluster"]] == [{"external_id": ["T1036"]}, {"external_id": ["T1566.001"]}]
    assert found[1]["GalaxyCluster"][0]["meta"] == {} and found[1]["GalaxyCluster"][0]["tag_id"] == "3"


def test_ids_are_stable() -> None:
    """The same tag gives the same galaxy and cluster uuids every time."""
    tag = [{"id": "9", "name": 'misp-galaxy:sector="Finance"'}]
    assert galaxies(tag) == galaxies(tag)
