# Run with: fleetwave policy test .fleetwave/policies
package fleetwave.policy_test

import data.fleetwave.policy

test_canary_only_stops_after_the_canary if {
	count(policy.deny) == 1 with input as {
		"rollout": {"commit": "0123456789abcdef", "message": "try it [canary only]"},
		"wave": {"name": "eu-west", "index": 1},
	}
}

test_canary_wave_runs if {
	count(policy.deny) == 0 with input as {
		"rollout": {"commit": "0123456789abcdef", "message": "try it [canary only]"},
		"wave": {"name": "canary", "index": 0},
	}
}

test_other_commits_run if {
	count(policy.deny) == 0 with input as {
		"rollout": {"commit": "0123456789abcdef", "message": "podinfo 6.6.0"},
		"wave": {"name": "fleet", "index": 2},
	}
}
