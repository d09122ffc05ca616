# Authorisation of the flexibility API (flexibility.md §8).
#
# input.subject  {id, is_service, scopes}
# input.resource {attributes: {owner_id}}
# input.action   {name: "read"|"write"|"delete"|"service"|"export"}
#
# Participants (users) act only on their own commitments; service accounts need a scope per
# action. Anything without a rule is denied.
package celine.flexibility.access

import rego.v1

default allow := false

is_service if input.subject.is_service == true

is_user if input.subject.is_service == false

has_scope(scope) if scope in input.subject.scopes

flexibility_scope if has_scope("flexibility.read")

flexibility_scope if has_scope("flexibility.write")

flexibility_scope if has_scope("flexibility.admin")

owner if {
	input.subject.id != ""
	input.resource.attributes.owner_id == input.subject.id
}

user_actions := {"read", "write", "delete"}

service_read if has_scope("flexibility.read")

service_read if has_scope("flexibility.admin")

service_write if has_scope("flexibility.write")

service_write if has_scope("flexibility.admin")

allow if {
	is_user
	input.action.name in user_actions
	owner
	flexibility_scope
}

allow if {
	is_service
	input.action.name == "export"
	has_scope("flexibility.commitments.export")
}

allow if {
	is_service
	input.action.name in {"read", "service"}
	service_read
}

allow if {
	is_service
	input.action.name in {"write", "delete"}
	service_write
}

default reason := "access denied"

reason := "user accessing own commitment" if {
	is_user
	allow
} else := "service access granted" if {
	is_service
	allow
} else := "service account required" if {
	is_user
	input.action.name in {"service", "export"}
} else := "missing flexibility scope" if {
	is_user
	input.action.name in user_actions
	not flexibility_scope
} else := "not resource owner" if {
	is_user
	input.action.name in user_actions
	not owner
} else := "missing flexibility scope" if {
	is_service
	input.action.name in {"read", "service", "write", "delete", "export"}
}
