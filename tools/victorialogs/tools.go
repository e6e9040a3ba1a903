//go:build tools

// Package victorialogs pins VictoriaLogs (Apache-2.0), a log server that takes Loki's
// push protocol, in a module of its own: the Loki shipping test builds it from here, so
// its dependencies stay out of the service's go.mod.
package victorialogs

import _ "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"
