// Package workflows holds fleetwave's Temporal workflows: Rollout moves one source commit
// through the waves of the plan, one Wave child workflow per wave, and reverts through git when
// a site degrades. It also declares the message names, the search attributes and a typed
// client that every front end (CLI, webhooks, Slack) uses to start and inspect rollouts.
//
// Workflow code here is deterministic: time comes from workflow.Now, waiting from timers, and
// every side effect is an activity.
package workflows
