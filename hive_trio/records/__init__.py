"""Every record that crosses a wire or lands in a row, and the one converter that encodes them.

The package imports nothing else of hive_trio's. One module per wire: `rows` (store rows, shared names,
the dashboard snapshot), `events` (HelperEvent and DashboardEvent), `tools` (MCP tool arguments), `host`
(host.sock requests and rows), `harness` (what harnesses report, and its events, verbs and rows: issue
10), `stream` (dashboard actions and frames), `federation` (hive-to-hive payloads, remote roster, link
state), and `convert` (the one converter, configured once, and `dumps`, the one JSON encoding).
Everything public is re-exported here, one
`import X as X` line each (the explicit re-export mypy and readers recognise), so `from hive_trio.records
import X` works for every X. It must never grow behaviour beyond shape and encoding.
"""

from __future__ import annotations

from hive_trio.records.convert import CONVERTER as CONVERTER
from hive_trio.records.convert import INT64_MAX as INT64_MAX
from hive_trio.records.convert import INT64_MIN as INT64_MIN
from hive_trio.records.convert import RecordError as RecordError
from hive_trio.records.convert import describe_error as describe_error
from hive_trio.records.convert import dumps as dumps
from hive_trio.records.convert import from_json as from_json
from hive_trio.records.convert import json_type_name as json_type_name
from hive_trio.records.convert import structure as structure
from hive_trio.records.convert import to_json as to_json
from hive_trio.records.convert import unstructure as unstructure
from hive_trio.records.convert import unstructure_event as unstructure_event
from hive_trio.records.convert import unstructure_frame as unstructure_frame
from hive_trio.records.events import DASHBOARD_EVENT_TYPES as DASHBOARD_EVENT_TYPES
from hive_trio.records.events import HELPER_EVENT_TYPES as HELPER_EVENT_TYPES
from hive_trio.records.events import ApprovalAddedEvent as ApprovalAddedEvent
from hive_trio.records.events import ApprovalResolvedEvent as ApprovalResolvedEvent
from hive_trio.records.events import ContainerRemovedEvent as ContainerRemovedEvent
from hive_trio.records.events import ContainerStateChangedEvent as ContainerStateChangedEvent
from hive_trio.records.events import DashboardEvent as DashboardEvent
from hive_trio.records.events import DeliveredEvent as DeliveredEvent
from hive_trio.records.events import HelperApprovalResolved as HelperApprovalResolved
from hive_trio.records.events import HelperContainerCrash as HelperContainerCrash
from hive_trio.records.events import HelperDestroyed as HelperDestroyed
from hive_trio.records.events import HelperEvent as HelperEvent
from hive_trio.records.events import HelperKilled as HelperKilled
from hive_trio.records.events import HelperNeedsUpdate as HelperNeedsUpdate
from hive_trio.records.events import HelperQuestionAnswered as HelperQuestionAnswered
from hive_trio.records.events import HelperQuestionAsked as HelperQuestionAsked
from hive_trio.records.events import HelperRebuilt as HelperRebuilt
from hive_trio.records.events import HelperSpawned as HelperSpawned
from hive_trio.records.events import QuestionAddedEvent as QuestionAddedEvent
from hive_trio.records.events import QuestionResolvedEvent as QuestionResolvedEvent
from hive_trio.records.events import SentEvent as SentEvent
from hive_trio.records.events import TransientClearedEvent as TransientClearedEvent
from hive_trio.records.events import TransientSetEvent as TransientSetEvent
from hive_trio.records.federation import HelperUndeliverable as HelperUndeliverable
from hive_trio.records.federation import LinkState as LinkState
from hive_trio.records.federation import RemoteAgent as RemoteAgent
from hive_trio.records.federation import RemoteAgentRow as RemoteAgentRow
from hive_trio.records.federation import WireBounce as WireBounce
from hive_trio.records.federation import WireMessage as WireMessage
from hive_trio.records.federation import WireRoster as WireRoster
from hive_trio.records.harness import RULE_DECIDER as RULE_DECIDER
from hive_trio.records.harness import TTL_DECIDER as TTL_DECIDER
from hive_trio.records.harness import WITHDRAWN_DECIDER as WITHDRAWN_DECIDER
from hive_trio.records.harness import AgentUsage as AgentUsage
from hive_trio.records.harness import AllowPermissionAction as AllowPermissionAction
from hive_trio.records.harness import Budget as Budget
from hive_trio.records.harness import DenyPermissionAction as DenyPermissionAction
from hive_trio.records.harness import HelperBudgetExceeded as HelperBudgetExceeded
from hive_trio.records.harness import HelperLoggedIn as HelperLoggedIn
from hive_trio.records.harness import HelperNeedsLogin as HelperNeedsLogin
from hive_trio.records.harness import HelperTurnFailed as HelperTurnFailed
from hive_trio.records.harness import HostAllowPermission as HostAllowPermission
from hive_trio.records.harness import HostDenyPermission as HostDenyPermission
from hive_trio.records.harness import HostInterrupt as HostInterrupt
from hive_trio.records.harness import HostPermissions as HostPermissions
from hive_trio.records.harness import HostReminders as HostReminders
from hive_trio.records.harness import HostSetBudget as HostSetBudget
from hive_trio.records.harness import HostTranscript as HostTranscript
from hive_trio.records.harness import InterruptAction as InterruptAction
from hive_trio.records.harness import PermissionAddedEvent as PermissionAddedEvent
from hive_trio.records.harness import PermissionDecision as PermissionDecision
from hive_trio.records.harness import PermissionRequest as PermissionRequest
from hive_trio.records.harness import PermissionResolvedEvent as PermissionResolvedEvent
from hive_trio.records.harness import RemindArgs as RemindArgs
from hive_trio.records.harness import Reminder as Reminder
from hive_trio.records.harness import ReportStateArgs as ReportStateArgs
from hive_trio.records.harness import RequestPermissionArgs as RequestPermissionArgs
from hive_trio.records.harness import TranscriptEntry as TranscriptEntry
from hive_trio.records.harness import TranscriptKind as TranscriptKind
from hive_trio.records.harness import TurnEventArgs as TurnEventArgs
from hive_trio.records.harness import TurnEventEvent as TurnEventEvent
from hive_trio.records.harness import TurnEventKind as TurnEventKind
from hive_trio.records.harness import TurnFinishedArgs as TurnFinishedArgs
from hive_trio.records.harness import TurnFinishedEvent as TurnFinishedEvent
from hive_trio.records.harness import TurnOutcome as TurnOutcome
from hive_trio.records.harness import TurnStartedArgs as TurnStartedArgs
from hive_trio.records.harness import TurnStartedEvent as TurnStartedEvent
from hive_trio.records.harness import WaitControlArgs as WaitControlArgs
from hive_trio.records.host import HOST_REQUEST_TYPES as HOST_REQUEST_TYPES
from hive_trio.records.host import HOST_SOCK_VERSION as HOST_SOCK_VERSION
from hive_trio.records.host import HostAgentStatus as HostAgentStatus
from hive_trio.records.host import HostAnswer as HostAnswer
from hive_trio.records.host import HostApproval as HostApproval
from hive_trio.records.host import HostApprovals as HostApprovals
from hive_trio.records.host import HostApprove as HostApprove
from hive_trio.records.host import HostBroadcast as HostBroadcast
from hive_trio.records.host import HostCancelQuestion as HostCancelQuestion
from hive_trio.records.host import HostDashboardUrl as HostDashboardUrl
from hive_trio.records.host import HostDeny as HostDeny
from hive_trio.records.host import HostDestroy as HostDestroy
from hive_trio.records.host import HostInbox as HostInbox
from hive_trio.records.host import HostKill as HostKill
from hive_trio.records.host import HostList as HostList
from hive_trio.records.host import HostLogTail as HostLogTail
from hive_trio.records.host import HostPending as HostPending
from hive_trio.records.host import HostPurgeTombstone as HostPurgeTombstone
from hive_trio.records.host import HostQuestions as HostQuestions
from hive_trio.records.host import HostRebuild as HostRebuild
from hive_trio.records.host import HostReply as HostReply
from hive_trio.records.host import HostRequest as HostRequest
from hive_trio.records.host import HostRequestSpawn as HostRequestSpawn
from hive_trio.records.host import HostRestart as HostRestart
from hive_trio.records.host import HostSend as HostSend
from hive_trio.records.host import HostSetPaused as HostSetPaused
from hive_trio.records.host import HostSpawn as HostSpawn
from hive_trio.records.host import HostStart as HostStart
from hive_trio.records.host import HostStop as HostStop
from hive_trio.records.host import HostSubscribeAgentStatus as HostSubscribeAgentStatus
from hive_trio.records.host import HostTombstones as HostTombstones
from hive_trio.records.host import HostUrls as HostUrls
from hive_trio.records.host import Scope as Scope
from hive_trio.records.host import Urls as Urls
from hive_trio.records.host import rfc3339 as rfc3339
from hive_trio.records.rows import BROADCAST as BROADCAST
from hive_trio.records.rows import CANCELLED_ANSWER as CANCELLED_ANSWER
from hive_trio.records.rows import EXPIRED_ANSWER as EXPIRED_ANSWER
from hive_trio.records.rows import MANAGER_AGENT as MANAGER_AGENT
from hive_trio.records.rows import OPERATOR as OPERATOR
from hive_trio.records.rows import SYSTEM_SENDER as SYSTEM_SENDER
from hive_trio.records.rows import TTL_ANSWERER as TTL_ANSWERER
from hive_trio.records.rows import AgentRecord as AgentRecord
from hive_trio.records.rows import AgentStatus as AgentStatus
from hive_trio.records.rows import Approval as Approval
from hive_trio.records.rows import ApprovalDraft as ApprovalDraft
from hive_trio.records.rows import ApprovalKind as ApprovalKind
from hive_trio.records.rows import ApprovalStatus as ApprovalStatus
from hive_trio.records.rows import ApprovalVerdict as ApprovalVerdict
from hive_trio.records.rows import Delivery as Delivery
from hive_trio.records.rows import Message as Message
from hive_trio.records.rows import PidRecord as PidRecord
from hive_trio.records.rows import Question as Question
from hive_trio.records.rows import QuestionDraft as QuestionDraft
from hive_trio.records.rows import Snapshot as Snapshot
from hive_trio.records.rows import TransientKind as TransientKind
from hive_trio.records.rows import short_sha as short_sha
from hive_trio.records.stream import DASHBOARD_ACTION_TYPES as DASHBOARD_ACTION_TYPES
from hive_trio.records.stream import DASHBOARD_OPS as DASHBOARD_OPS
from hive_trio.records.stream import FRAME_TAGS as FRAME_TAGS
from hive_trio.records.stream import FRAME_TYPES as FRAME_TYPES
from hive_trio.records.stream import AnswerAction as AnswerAction
from hive_trio.records.stream import AnswerText as AnswerText
from hive_trio.records.stream import ApproveAction as ApproveAction
from hive_trio.records.stream import CancelQuestionAction as CancelQuestionAction
from hive_trio.records.stream import CancelTransientAction as CancelTransientAction
from hive_trio.records.stream import DashboardAction as DashboardAction
from hive_trio.records.stream import DenyAction as DenyAction
from hive_trio.records.stream import DestroyAction as DestroyAction
from hive_trio.records.stream import EventFrame as EventFrame
from hive_trio.records.stream import LogTailAction as LogTailAction
from hive_trio.records.stream import RebuildAction as RebuildAction
from hive_trio.records.stream import RequestId as RequestId
from hive_trio.records.stream import RestartAction as RestartAction
from hive_trio.records.stream import ResultFrame as ResultFrame
from hive_trio.records.stream import ResumedFrame as ResumedFrame
from hive_trio.records.stream import SendAction as SendAction
from hive_trio.records.stream import SetPausedAction as SetPausedAction
from hive_trio.records.stream import SpawnAction as SpawnAction
from hive_trio.records.stream import StartAction as StartAction
from hive_trio.records.stream import StopAction as StopAction
from hive_trio.records.stream import StreamFrame as StreamFrame
from hive_trio.records.tools import AgentNameArgs as AgentNameArgs
from hive_trio.records.tools import AnswerArgs as AnswerArgs
from hive_trio.records.tools import AskArgs as AskArgs
from hive_trio.records.tools import NoArgs as NoArgs
from hive_trio.records.tools import RecentArgs as RecentArgs
from hive_trio.records.tools import RecvArgs as RecvArgs
from hive_trio.records.tools import RequestApplyCommitArgs as RequestApplyCommitArgs
from hive_trio.records.tools import RequestSpawnArgs as RequestSpawnArgs
from hive_trio.records.tools import SendArgs as SendArgs
from hive_trio.records.tools import SetStatusArgs as SetStatusArgs

__all__ = [
    "BROADCAST",
    "CANCELLED_ANSWER",
    "CONVERTER",
    "DASHBOARD_ACTION_TYPES",
    "DASHBOARD_EVENT_TYPES",
    "DASHBOARD_OPS",
    "EXPIRED_ANSWER",
    "FRAME_TAGS",
    "FRAME_TYPES",
    "HELPER_EVENT_TYPES",
    "HOST_REQUEST_TYPES",
    "HOST_SOCK_VERSION",
    "INT64_MAX",
    "INT64_MIN",
    "MANAGER_AGENT",
    "OPERATOR",
    "RULE_DECIDER",
    "SYSTEM_SENDER",
    "TTL_ANSWERER",
    "TTL_DECIDER",
    "WITHDRAWN_DECIDER",
    "AgentNameArgs",
    "AgentRecord",
    "AgentStatus",
    "AgentUsage",
    "AllowPermissionAction",
    "AnswerAction",
    "AnswerArgs",
    "AnswerText",
    "Approval",
    "ApprovalAddedEvent",
    "ApprovalKind",
    "ApprovalResolvedEvent",
    "ApprovalStatus",
    "ApproveAction",
    "AskArgs",
    "Budget",
    "CancelQuestionAction",
    "CancelTransientAction",
    "ContainerRemovedEvent",
    "ContainerStateChangedEvent",
    "DashboardAction",
    "DashboardEvent",
    "DeliveredEvent",
    "Delivery",
    "DenyAction",
    "DenyPermissionAction",
    "DestroyAction",
    "EventFrame",
    "HelperApprovalResolved",
    "HelperBudgetExceeded",
    "HelperContainerCrash",
    "HelperDestroyed",
    "HelperEvent",
    "HelperKilled",
    "HelperLoggedIn",
    "HelperNeedsLogin",
    "HelperNeedsUpdate",
    "HelperQuestionAnswered",
    "HelperQuestionAsked",
    "HelperRebuilt",
    "HelperSpawned",
    "HelperTurnFailed",
    "HostAgentStatus",
    "HostAllowPermission",
    "HostAnswer",
    "HostApproval",
    "HostApprovals",
    "HostApprove",
    "HostBroadcast",
    "HostCancelQuestion",
    "HostDeny",
    "HostDenyPermission",
    "HostDestroy",
    "HostInterrupt",
    "HostKill",
    "HostList",
    "HostPending",
    "HostPermissions",
    "HostPurgeTombstone",
    "HostQuestions",
    "HostRebuild",
    "HostReminders",
    "HostRequest",
    "HostRequestSpawn",
    "HostRestart",
    "HostSend",
    "HostSetBudget",
    "HostSetPaused",
    "HostSpawn",
    "HostStart",
    "HostStop",
    "HostSubscribeAgentStatus",
    "HostTombstones",
    "HostTranscript",
    "HostUrls",
    "InterruptAction",
    "Message",
    "NoArgs",
    "PermissionAddedEvent",
    "PermissionDecision",
    "PermissionRequest",
    "PermissionResolvedEvent",
    "PidRecord",
    "Question",
    "QuestionAddedEvent",
    "QuestionResolvedEvent",
    "RebuildAction",
    "RecentArgs",
    "RecordError",
    "RecvArgs",
    "RemindArgs",
    "Reminder",
    "ReportStateArgs",
    "RequestApplyCommitArgs",
    "RequestId",
    "RequestPermissionArgs",
    "RequestSpawnArgs",
    "RestartAction",
    "ResultFrame",
    "ResumedFrame",
    "Scope",
    "SendAction",
    "SendArgs",
    "SentEvent",
    "SetStatusArgs",
    "Snapshot",
    "SpawnAction",
    "StartAction",
    "StopAction",
    "StreamFrame",
    "TranscriptEntry",
    "TranscriptKind",
    "TransientClearedEvent",
    "TransientKind",
    "TransientSetEvent",
    "TurnEventArgs",
    "TurnEventEvent",
    "TurnEventKind",
    "TurnFinishedArgs",
    "TurnFinishedEvent",
    "TurnOutcome",
    "TurnStartedArgs",
    "TurnStartedEvent",
    "Urls",
    "WaitControlArgs",
    "describe_error",
    "dumps",
    "from_json",
    "json_type_name",
    "rfc3339",
    "short_sha",
    "structure",
    "to_json",
    "unstructure",
    "unstructure_event",
    "unstructure_frame",
]
