// Package chatops is fleetwave's Slack front end. Out: one thread per rollout in the plan's
// channel, a header message kept up to date with chat.update, replies for each wave, approval
// requests with Approve and Reject buttons (Block Kit), alerts and the result. In: the
// `/fleetwave` slash command and the buttons, every request verified with the app's signing
// secret and the user's right to act checked before anything reaches Temporal.
//
// The package does not import workflows: the handlers reach rollouts through the small
// Rollouts interface, which cmd/fleetwave implements on the workflows client, so activities
// can use the outbound half without an import cycle.
package chatops
