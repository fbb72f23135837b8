// The Function app's access to the Arc-enabled Exchange servers, granted on their
// resource group only. A run command runs as LocalSystem on the server, so writing one
// amounts to administrator access there: never grant this on the subscription.

targetScope = 'resourceGroup'

@description('Principal (object) id of the Function app\'s managed identity.')
param principalId string

@description('custom: only what the arc collector calls; builtin: Azure Connected Machine Resource Administrator.')
@allowed([
  'custom'
  'builtin'
])
param role string = 'custom'

// Azure Connected Machine Resource Administrator: also manages extensions and the
// machine itself, hence not the default.
var connectedMachineResourceAdministrator = 'cd570a14-e51a-42ad-bac8-bafd67325302'

// shared/collectors/arc.py reads the machine, then creates, polls and deletes a run
// command; nothing else.
var arcCollectorActions = [
  'Microsoft.HybridCompute/machines/read'
  'Microsoft.HybridCompute/machines/runCommands/read'
  'Microsoft.HybridCompute/machines/runCommands/write'
  'Microsoft.HybridCompute/machines/runCommands/delete'
]

var customRoleId = guid(resourceGroup().id, 'stigwatch-arc-collector')
var assignedRoleId = (role == 'custom') ? customRoleId : connectedMachineResourceAdministrator

resource arcCollectorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (role == 'custom') {
  name: customRoleId
  properties: {
    roleName: 'stigwatch Arc collector (${resourceGroup().name})'
    description: 'Read Arc machines and create, read and delete their run commands (stigwatch).'
    type: 'CustomRole'
    permissions: [
      {
        actions: arcCollectorActions
        notActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource arcCollectorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, role)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', assignedRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    arcCollectorRole
  ]
}
