# Authorisation of the grid read API (alerts-and-access.md §7).
#
# input.subject  {id, type: "user"|"service", groups, scopes, claims: {network_id, dso_count}}
# input.resource {type, id: "grid", attributes: {network_id?}}
# input.action   {name: "read"|"alerts.read"|"alerts.write"}
#
# claims.network_id is the requested network when the caller holds it, else the caller's
# single DSO alias, else null; always null for services. Anything without a rule is denied.
package celine.grid.access

import rego.v1

default allow := false

is_user if input.subject.type == "user"

is_service if input.subject.type == "service"

has_scope(scope) if scope in input.subject.scopes

claimed_network := input.subject.claims.network_id

requested_network := input.resource.attributes.network_id

# Users read only the network they hold; scopes never widen this.
allow if {
	is_user
	input.action.name == "read"
	claimed_network != null
	requested_network == claimed_network
}

allow if {
	is_user
	input.action.name == "alerts.read"
}

allow if {
	is_user
	input.action.name == "alerts.write"
	claimed_network != null
}

allow if {
	is_service
	input.action.name == "read"
	service_reads
}

service_reads if has_scope("grid.read")

service_reads if has_scope("grid.admin")

# grid.admin grants every action to a service.
allow if {
	is_service
	has_scope("grid.admin")
}

default reason := "access denied: no rule for this action"

reason := "service access granted" if {
	is_service
	allow
} else := "user accessing own network data" if {
	is_user
	input.action.name == "read"
	allow
} else := "user managing own alert rules" if {
	is_user
	allow
} else := "service missing grid.read scope" if {
	is_service
	input.action.name == "read"
} else := "service missing grid.admin scope" if {
	is_service
} else := "network_id mismatch: user does not belong to the requested DSO" if {
	is_user
	input.action.name == "read"
	input.subject.claims.dso_count > 0
} else := "ambiguous DSO organization membership: name the network" if {
	is_user
	input.action.name == "alerts.write"
	input.subject.claims.dso_count >= 2
} else := "missing DSO organization membership" if {
	is_user
	input.action.name in {"read", "alerts.write"}
}
