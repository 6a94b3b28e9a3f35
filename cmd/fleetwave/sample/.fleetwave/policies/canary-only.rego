# An example policy: a commit whose message says "[canary only]" goes to the canary wave and
# no further. See docs/policy.md for the input and the rules.
package fleetwave.policy

deny contains msg if {
	input.wave.index > 0
	contains(input.rollout.message, "[canary only]")
	msg := sprintf("commit %s is marked [canary only]: wave %s does not start", [substring(input.rollout.commit, 0, 7), input.wave.name])
}
