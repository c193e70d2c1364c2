"""The app layer: `App`, `Task` and its handles, topics and subscribers — what a user
declares and calls. It composes the features below it and never runs handlers."""
