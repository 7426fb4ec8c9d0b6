"""Every PyMISP method classed as read, write or admin: admin methods are served only when
``[General] allowAdminApis=true``.

Admin: what administers the MISP instance rather than its threat data: users, roles, organisations,
authkeys, sync servers and their keys, server settings, workers, feeds, instance-wide lists (taxonomies,
warninglists, noticelists, galaxies, object templates, decaying models, correlation exclusions, blocklists),
sharing groups, logs, ``update_misp``, push and pull. A name missing from this table counts as admin;
``tests/api/test_access.py`` fails when PyMISP has a public method the table does not class.
"""
from __future__ import annotations

READ = frozenset("""
attribute_exists attribute_proposals attributes attributes_statistics communities decaying_models
event_delegations event_exists events galaxies get_analyst_data get_attribute get_attribute_proposal
get_community get_event get_event_report get_event_reports get_galaxy get_galaxy_cluster get_note
get_noticelist get_object get_object_template get_opinion get_raw_object_template get_relationship
get_sharing_group get_tag get_taxonomy get_warninglist noticelists object_exists object_templates search
search_feeds search_galaxy search_galaxy_clusters search_index search_sightings search_tags
sharing_group_exists sharing_groups sightings tags tags_statistics taxonomies values_in_warninglist
warninglists
""".split())

WRITE = frozenset("""
accept_attribute_proposal accept_event_delegation add_analyst_data add_attribute add_attribute_proposal
add_event add_event_report add_galaxy_cluster add_galaxy_cluster_relation add_note add_object
add_object_reference add_opinion add_relationship add_sighting add_tag attach_galaxy_cluster
change_sharing_group_on_entity contact_event_reporter delegate_event delete_analyst_data delete_attribute
delete_attribute_proposal delete_event delete_event_report delete_galaxy_cluster
delete_galaxy_cluster_relation delete_note delete_object delete_object_reference delete_opinion
delete_relationship delete_sighting delete_tag disable_tag discard_attribute_proposal
discard_event_delegation enable_tag enrich_attribute enrich_event fork_galaxy_cluster freetext publish
publish_galaxy_cluster push_event_to_ZMQ restore_attribute tag unpublish untag update_analyst_data
update_attribute update_attribute_proposal update_event update_event_report update_galaxy_cluster
update_galaxy_cluster_relation update_note update_object update_opinion update_relationship update_tag
upload_stix
""".split())

ADMIN = frozenset("""
accept_user_registration add_correlation_exclusion add_event_blocklist add_feed add_org_to_sharing_group
add_organisation add_organisation_blocklist add_role add_server add_server_to_sharing_group
add_sharing_group add_user cache_all_feeds cache_feed cache_freetext_feeds cache_misp_feeds
change_user_password clean_correlation_exclusions compare_feeds correlation_exclusions db_schema_diagnostic
delete_correlation_exclusion delete_event_blocklist delete_feed delete_organisation
delete_organisation_blocklist delete_role delete_server delete_sharing_group delete_user
delete_user_setting direct_call disable_decaying_model disable_feed disable_feed_cache disable_noticelist
disable_taxonomy disable_taxonomy_tags disable_warninglist discard_user_registration enable_decaying_model
enable_feed enable_feed_cache enable_noticelist enable_taxonomy enable_taxonomy_tags enable_warninglist
event_blocklists feeds fetch_all_feeds fetch_feed get_all_functions get_correlation_exclusion get_feed
get_new_authkey get_organisation get_server_setting get_sync_config get_user get_user_setting get_workers
import_server kill_all_workers load_default_feeds organisation_blocklists organisation_exists
organisations remote_acl remove_org_from_sharing_group remove_server_from_sharing_group
request_community_access restart_dead_workers restart_workers roles search_logs server_pull server_push
server_settings servers set_default_role set_server_setting set_taxonomy_required set_user_setting
sign_blob start_worker stop_worker_by_pid test_server toggle_global_pythonify toggle_warninglist
update_decaying_models update_event_blocklist update_feed update_galaxies update_misp update_noticelists
update_object_templates update_organisation update_organisation_blocklist update_role update_server
update_sharing_group update_taxonomies update_user update_warninglists user_registrations user_settings
users users_heartbeat users_statistics
""".split())

READ_KIND, WRITE_KIND, ADMIN_KIND = "read", "write", "admin"


def access_of(name: str) -> str:
    """``"read"``, ``"write"`` or ``"admin"``; a name the table does not class is admin."""
    if name in READ:
        return READ_KIND
    if name in WRITE:
        return WRITE_KIND
    return ADMIN_KIND


def is_admin(name: str) -> bool:
    """Whether ``name`` is served only with ``allowAdminApis=true``."""
    return access_of(name) == ADMIN_KIND
