// Package layers holds no code. Its test states the parts of the module and the imports
// that must never exist between them, and checks them on direct imports and on
// dependency closures (go list -deps): a rule broken anywhere down the chain fails it,
// and the failure prints the chain of imports that breaks it.
package layers
